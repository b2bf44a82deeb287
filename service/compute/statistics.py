"""Summed statistics sent to ``POST /compute``, checked against the metrics graphs' manifests.

The fields are the metrics graph's inputs (``statistics`` of ``/score``, ``/summary`` and
``focal evaluate``), each with the manifest's dtype and shape; ``C`` (classes) or ``L``
(labels) is read from the arrays and must agree across them. A multi-class body may add the
ranking histograms (``positive_histogram``, ``negative_histogram``: ``/score`` with
``ranking``), which add AUROC and average precision. Every statistic is a sum of non-negative
terms, so every value must be finite and >= 0; counts must be integers. The server checks
shapes and domains, not that the sums come from one dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from focal_eval.service.artifacts import WIDTHS
from focal_eval.service.core.batches import scorer_for
from focal_eval.service.core.errors import invalid, show
from focal_eval.service.core.metric_groups import metric_groups
from focal_eval.service.core.scoring import Scorer, Scorers
from focal_eval.service.core.tasks import BINARY, MULTICLASS, MULTILABEL, NAMES

FIELDS = ("task", "statistics")
RANKING_FIELDS = ("positive_histogram", "negative_histogram")


@dataclass(frozen=True)
class Summed:
    """Checked statistics: the task, its scorers (then ranking's), the arrays and the width."""

    task: str
    scorers: list[Scorer]
    arrays: dict[str, npt.NDArray[Any]]
    width: int

    def metrics(self) -> dict[str, Any]:
        """The metrics graphs' outputs on the sums, grouped as responses group them."""
        outputs: dict[str, Any] = {}
        for scorer in self.scorers:
            outputs |= scorer.compute_metrics(self.arrays)
        return metric_groups(self.task, self.scorers, outputs)


def decode_statistics(document: Any, scorers: Scorers, max_width: int) -> Summed:
    """Check a parsed ``/compute`` body and convert its statistics to arrays.

    Raises:
        RequestError: 422 naming the field: not an object, an unknown or missing field, a
            task these statistics or graphs do not fit, a value of the wrong shape, type or
            sign, a width out of range.
    """
    if not isinstance(document, dict):
        raise invalid("body: expected a JSON object with statistics (and task)")
    for name in document:
        if name not in FIELDS:
            raise invalid(f"{name}: unknown field (accepted: {', '.join(FIELDS)})")
    statistics = document.get("statistics")
    if not isinstance(statistics, dict):
        raise invalid(f"statistics: expected an object of named arrays, got {show(statistics)}")
    task = _task(document.get("task"), statistics)
    graphs = [scorer_for(scorers, task)]
    if task == MULTICLASS and any(name in statistics for name in RANKING_FIELDS):
        if scorers.ranking is None:
            raise invalid("statistics: this server has no ranking graphs for the histograms")
        graphs.append(scorers.ranking)
    inputs = {e["name"]: e for g in graphs for e in g.metrics_artifact.manifest["inputs"]}
    for name in statistics:
        if name not in inputs:
            raise invalid(f"statistics.{name}: unknown for {task} (expected: {', '.join(inputs)})")
    widths: dict[str, int] = {}
    arrays = {
        name: _array(name, statistics.get(name), entry, widths) for name, entry in inputs.items()
    }
    width = next(iter(widths.values()))
    least = {MULTICLASS: 2, MULTILABEL: 1, BINARY: 1}[task]
    most = 1 if task == BINARY else max_width
    if not least <= width <= most:
        unit = graphs[0].task.width
        raise invalid(
            f"statistics: {width} {unit}; expected {least} to {most} for a {task} task"
            + (" (FOCAL_MAX_CLASSES)" if width > most and task != BINARY else "")
        )
    return Summed(task, graphs, arrays, width)


def _task(requested: Any, statistics: Mapping[str, Any]) -> str:
    """The task named, or the one the statistics' names show."""
    if requested is not None:
        if requested not in NAMES:
            raise invalid(f"task: expected one of {', '.join(NAMES)}, got {show(requested)}")
        return str(requested)
    if "confusion_matrix" in statistics:
        return MULTICLASS
    if "true_positive" in statistics:
        return MULTILABEL
    raise invalid(
        "task: not given, and the statistics have neither confusion_matrix (multiclass) nor"
        " true_positive (multilabel)"
    )


def _array(
    name: str, value: Any, entry: Mapping[str, Any], widths: dict[str, int]
) -> npt.NDArray[Any]:
    """One statistic as the manifest's dtype and shape; ``widths`` records C or L."""
    field = f"statistics.{name}"
    if value is None:
        raise invalid(f"{field}: missing (required)")
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError):
        raise invalid(f"{field}: expected a regular array of numbers") from None
    if array.dtype.kind not in "iuf":
        raise invalid(f"{field}: expected a regular array of numbers, got {show(value)}")
    shape = entry["shape"]
    if array.ndim != len(shape):
        raise invalid(f"{field}: expected {len(shape)} dimensions, got shape {list(array.shape)}")
    for size, expected in zip(array.shape, shape, strict=True):
        if expected in WIDTHS:
            known = widths.setdefault(expected, size)
            if size != known:
                raise invalid(
                    f"{field}: shape {list(array.shape)}, but the others have {expected} = {known}"
                )
        elif size != expected:
            raise invalid(f"{field}: expected shape {shape}, got {list(array.shape)}")
    dtype = np.dtype(entry["dtype"])
    if dtype.kind == "i" and array.dtype.kind == "f":  # orjson reads an int beyond 64 bits as one
        odd = (array != np.floor(array)) | (np.abs(array) > np.iinfo(np.int64).max)
        first = array[odd].flat[0] if odd.any() else array.flat[0]
        raise invalid(f"{field}: expected integers (a count), got {show(first.item())}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise invalid(
            f"{field}: expected finite values >= 0 (every statistic is a sum of such terms)"
        )
    if dtype.kind == "i" and array.size and array.max() > np.iinfo(np.int64).max:
        raise invalid(f"{field}: a count beyond int64")
    return np.asarray(array, dtype=dtype, order="C")  # (ascontiguousarray makes 0-d 1-d)
