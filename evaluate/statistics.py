"""Additive statistics as plain dicts of numpy arrays: merged by ``+``, computed by the graph.

The ``statistics`` of ``/score``, ``/summary`` and ``/compute`` responses (JSON lists) and of
the library (arrays) alike. :func:`compute` runs the task's shipped metrics graph in
onnxruntime (no torch), after the checks ``POST /compute`` makes, so that a client and the
server compute the same numbers from the same sums.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from focal_eval.service.compute.statistics import decode_statistics
from focal_eval.service.core.errors import RequestError
from focal_eval.service.core.scoring import Scorers
from focal_eval.service.core.settings import Settings

Statistics = dict[str, npt.NDArray[Any]]


def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> Statistics:
    """Field-by-field sums of two statistics of one task (lists or arrays).

    Example:
        >>> merge({"bin_count": [1, 2]}, {"bin_count": np.array([3, 4])})["bin_count"].tolist()
        [4, 6]

    Raises:
        ValueError: the fields differ, or a field's shapes do.
    """
    if set(a) != set(b):
        raise ValueError(
            f"Expected statistics with the same fields, but got {sorted(set(a) ^ set(b))} in"
            " only one"
        )
    merged: Statistics = {}
    for name in a:
        left, right = np.asarray(a[name]), np.asarray(b[name])
        if left.shape != right.shape:
            raise ValueError(
                f"Expected `{name}` of one shape in both, but got {list(left.shape)} and"
                f" {list(right.shape)}"
            )
        merged[name] = np.asarray(left + right)  # 0-d sums stay arrays, not numpy scalars
    return merged


def compute(
    statistics: Mapping[str, Any], task: str | None = None, artifact_dir: Path | None = None
) -> dict[str, Any]:
    """Metrics of summed statistics: ``{"task", "metrics", "per_class" | "per_label"}``.

    ``task`` is read from the fields unless given (``binary`` must be); ``artifact_dir``
    holds the graphs (default: the shipped ones). NaN marks an undefined metric.

    Raises:
        ValueError: a field unknown, missing, of the wrong shape or domain (the message
            names it, as ``POST /compute``'s 422 does).
    """
    scorers = _scorers(artifact_dir)
    document: dict[str, Any] = {"statistics": dict(statistics)}  # arrays or lists, as given
    if task is not None:
        document["task"] = task
    try:
        summed = decode_statistics(document, scorers, max_width=np.iinfo(np.int32).max)
    except RequestError as error:
        raise ValueError(error.message) from None
    return {"task": summed.task, **summed.metrics()}


@functools.cache
def _scorers(artifact_dir: Path | None) -> Scorers:
    """The graphs, opened once per directory (one intra-op thread: metrics are small)."""
    settings = (
        Settings(threads=1)
        if artifact_dir is None
        else Settings(threads=1, artifact_dir=artifact_dir)
    )
    return Scorers.load(settings)
