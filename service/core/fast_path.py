"""The fused kernel as each task's fast path: found, loaded and self-tested.

Each task's portable evaluation graph is the reference. At start-up its fused graph (the
task's ``fused`` kind, e.g. ``fused_evaluation.onnx``: one op of the kernel library in
:mod:`~focal_eval.service.kernel`) scores a warm-up batch beside it; it serves only when every
count is equal and every float within ``|fused - portable| <= 1e-5 + 1e-4 |portable|``.
Otherwise the server runs the portable graph and says why: a log line, the
``focal_eval_fast_path`` state of the task, ``focal_eval_build_info`` (multi-class) and the v2
model metadata. States:

- ``live``: the fused graph serves;
- ``off``: ``FOCAL_FAST_PATH=false``;
- ``no_graph``: the artifact directory has no fused graph for the task;
- ``no_library``: the kernel library was not built (no C++ compiler at install), or
  ``FOCAL_KERNEL_LIBRARY`` names no file;
- ``unloadable``: onnxruntime cannot load the library or the graph with it;
- ``disagrees``: the warm-up batch gives other numbers than the portable graph.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime

from focal_eval.service.artifacts import Artifact, ArtifactError, open_session
from focal_eval.service.core.settings import Settings
from focal_eval.service.core.tasks import MULTICLASS, MULTILABEL, RANKING
from focal_eval.service.kernel import library_path

logger = logging.getLogger(__name__)

STATES = ("live", "off", "no_graph", "no_library", "unloadable", "disagrees")
ATOL, RTOL = 1e-5, 1e-4

Run = Callable[[Mapping[str, npt.NDArray[Any]]], Mapping[str, npt.NDArray[Any]]]


@dataclass(frozen=True)
class FastPath:
    """The outcome: a state of :data:`STATES`, why, and the fused session when live."""

    state: str
    reason: str
    session: onnxruntime.InferenceSession | None = None
    artifact: Artifact | None = None

    @property
    def live(self) -> bool:
        """The fused graph serves."""
        return self.session is not None


def open_fast_path(
    task: str,
    kind: str,
    artifacts: Mapping[str, Artifact],
    evaluation: Artifact,
    portable: Run,
    settings: Settings,
) -> FastPath:
    """Load the fused graph ``kind`` with the kernel library and self-test it.

    Args:
        task: the task it serves (its warm-up batch, the log line).
        kind: the fused graph's artifact kind.
        artifacts: the artifact directory's graphs by kind.
        evaluation: the portable evaluation graph whose inputs the fused one takes.
        portable: runs the portable graph(s) the fused one stands in for, outputs by name.
        settings: ``FOCAL_FAST_PATH``, ``FOCAL_KERNEL_LIBRARY`` (None: the one built with the
            package) and ``FOCAL_THREADS``.
    """
    outcome = _open(task, kind, artifacts, evaluation, portable, settings)
    log = logger.info if outcome.live or outcome.state == "off" else logger.warning
    log("fast path %s, %s: %s", task, outcome.state, outcome.reason)
    return outcome


def _open(
    task: str,
    kind: str,
    artifacts: Mapping[str, Artifact],
    evaluation: Artifact,
    portable: Run,
    settings: Settings,
) -> FastPath:
    if not settings.fast_path:
        return FastPath("off", "FOCAL_FAST_PATH is false; the portable graph serves")
    fused = artifacts.get(kind)
    if fused is None:
        return FastPath(
            "no_graph", f"no {kind} graph among the artifacts; the portable graph serves"
        )
    library = settings.kernel_library or library_path()
    if library is None or not library.is_file():
        where = "was not built (no C++ compiler at install)" if library is None else f"{library}"
        return FastPath(
            "no_library", f"the kernel library {where} is missing; the portable graph serves"
        )
    try:
        session = open_session(fused, settings.threads, [library])
    except (ArtifactError, RuntimeError) as error:
        return FastPath("unloadable", f"{error}; the portable graph serves")
    problem = _self_test(session, fused, evaluation, portable, WARM_UP[task](evaluation))
    if problem is not None:
        return FastPath("disagrees", f"{library}: {problem}; the portable graph serves")
    return FastPath("live", f"{library} agrees with the portable graph", session, fused)


def multiclass_feeds(evaluation: Artifact) -> dict[str, Any]:
    """A seeded batch with the cases kernels get wrong: ties, saturated rows, ignored rows."""
    rng = np.random.default_rng(20261129)
    rows, classes = 512, 10
    logits = (3.0 * rng.standard_normal((rows, classes))).astype(np.float32)
    logits[:classes] = 0.0
    logits[np.arange(classes), np.arange(classes)] = 40.0  # p_true rounds to 1
    logits[classes : 2 * classes] = 1.5  # every class tied: the first one is predicted
    labels = rng.integers(0, classes, rows)
    ignore_index = int(evaluation.defaults["ignore_index"])
    labels[::7] = ignore_index
    feeds = {
        "logits": logits,
        "labels": labels,
        "alpha": (0.5 + rng.random(classes)).astype(np.float32),
        "gamma": np.asarray(2.0, np.float32),
        "ignore_index": np.asarray(ignore_index, np.int64),
    }
    return {name: feeds[name] for name in evaluation.input_names}


def multilabel_feeds(evaluation: Artifact) -> dict[str, Any]:
    """A seeded batch with saturated logits, ignored targets and a row with none left."""
    rng = np.random.default_rng(20261129)
    rows, labels = 256, 12
    logits = (3.0 * rng.standard_normal((rows, labels))).astype(np.float32)
    logits[:4] = 40.0 * np.sign(logits[:4])  # p rounds to 0 or 1
    targets = (rng.random((rows, labels)) < 0.3).astype(np.int64)
    ignore_index = int(evaluation.defaults["ignore_index"])
    targets[rng.random((rows, labels)) < 0.1] = ignore_index
    targets[5] = ignore_index  # a sample with no label left
    return {
        "logits": logits,
        "targets": targets,
        "alpha": np.asarray(0.25, np.float32),
        "gamma": np.asarray(2.0, np.float32),
        "threshold": np.asarray(0.5, np.float32),
        "ignore_index": np.asarray(ignore_index, np.int64),
    }


WARM_UP: dict[str, Callable[[Artifact], dict[str, Any]]] = {
    MULTICLASS: multiclass_feeds,
    MULTILABEL: multilabel_feeds,
    RANKING: multiclass_feeds,
}


def _self_test(
    session: onnxruntime.InferenceSession,
    fused: Artifact,
    evaluation: Artifact,
    portable: Run,
    feeds: dict[str, Any],
) -> str | None:
    """None when the fused graph scores ``feeds`` as the portable one; else what differs."""
    if fused.input_names != evaluation.input_names:
        return f"inputs {fused.input_names} are not the portable graph's"
    try:
        got = dict(zip(fused.output_names, session.run(None, feeds), strict=True))
    except Exception as error:  # onnxruntime raises its own unexported exception types
        return f"the warm-up batch fails ({error})"
    want = portable(feeds)
    return _first_difference(got, want, fused.output_names)


def _first_difference(
    got: Mapping[str, npt.NDArray[Any]], want: Mapping[str, npt.NDArray[Any]], names: Sequence[str]
) -> str | None:
    for name in names:
        if name not in want:
            return f"output {name} is not the portable graph's"
        x, ref = np.asarray(got[name]), np.asarray(want[name])
        if x.shape != ref.shape or x.dtype != ref.dtype:
            return (
                f"{name}: {x.dtype}{list(x.shape)} where the portable graph gives"
                f" {ref.dtype}{list(ref.shape)}"
            )
        if ref.dtype.kind != "f":
            if not np.array_equal(x, ref):
                return f"{name}: {int(np.count_nonzero(x != ref))} counts differ"
        elif not np.allclose(x, ref, rtol=RTOL, atol=ATOL):
            worst = float(np.max(np.abs(x.astype(np.float64) - ref)))
            return f"{name}: differs by up to {worst:.3g}"
    return None
