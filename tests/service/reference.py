"""Eager PyTorch references for the route tests: what ``focal.update`` / ``focal.compute`` say.

The service never imports torch; these helpers do, so that every number a route returns is
checked against the library it was exported from, never against the service itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from focal_eval import focal

ARTIFACTS = Path(__file__).resolve().parents[2] / "service" / "artifacts"
MANIFEST = json.loads((ARTIFACTS / "evaluation.onnx.manifest.json").read_text())
MODEL_ID = hashlib.sha256((ARTIFACTS / "evaluation.onnx").read_bytes()).hexdigest()
DEFAULT_GAMMA = float(MANIFEST["defaults"]["gamma"])
DEFAULT_IGNORE_INDEX = int(MANIFEST["defaults"]["ignore_index"])
NUM_BINS = int(MANIFEST["defaults"]["num_bins"])

PER_SAMPLE = focal.PerSample._fields
STATISTICS = focal.Statistics._fields
METRICS = focal.Metrics._fields
SCALAR_METRICS = tuple(
    name for name in METRICS if name not in ("precision", "recall", "f1", "support")
)
PER_CLASS = ("precision", "recall", "f1", "support")
BIN_OUTPUTS = ("bin_count", "bin_confidence_sum", "bin_correct", "expected_calibration_error")
RTOL, ATOL = 1e-4, 1e-5


def flatten(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Segmentation-shaped ``(N, C, d1, ...)`` / ``(N, d1, ...)`` to ``(M, C)`` / ``(M,)``."""
    c = logits.shape[1]
    return np.moveaxis(logits, 1, -1).reshape(-1, c), labels.reshape(-1)


def eager(
    logits: np.ndarray,
    labels: np.ndarray,
    alpha: list[float] | np.ndarray | None = None,
    gamma: float = DEFAULT_GAMMA,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
) -> dict[str, np.ndarray]:
    """Every evaluation output by name, from eager ``focal.update`` and ``focal.compute``.

    ``logits`` is cast to float32 first, as the service does (float16 / float64 in, float32
    computed).
    """
    per_sample, statistics = focal.update(
        torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)),
        torch.from_numpy(np.asarray(labels, dtype=np.int64)),
        None if alpha is None else torch.tensor(np.asarray(alpha), dtype=torch.float32),
        gamma,
        ignore_index,
    )
    metrics = focal.compute(statistics)
    outputs: dict[str, np.ndarray] = {}
    for group in (per_sample, statistics, metrics):
        for name, value in zip(group._fields, group, strict=True):
            outputs[name] = value.numpy()
    return outputs


MULTILABEL_MANIFEST = json.loads(
    (ARTIFACTS / "multilabel_evaluation.onnx.manifest.json").read_text()
)
MULTILABEL_DEFAULTS = MULTILABEL_MANIFEST["defaults"]


def eager_multilabel(
    logits: np.ndarray,
    targets: np.ndarray,
    alpha: float = MULTILABEL_DEFAULTS["alpha"],
    gamma: float = MULTILABEL_DEFAULTS["gamma"],
    threshold: float = MULTILABEL_DEFAULTS["threshold"],
    ignore_index: int = MULTILABEL_DEFAULTS["ignore_index"],
) -> dict[str, np.ndarray]:
    """Every multi-label output by name, from ``focal.update_multilabel`` and its compute."""
    per_sample, statistics = focal.update_multilabel(
        torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)),
        torch.from_numpy(np.asarray(targets, dtype=np.int64)),
        alpha,
        gamma,
        threshold,
        ignore_index,
        MULTILABEL_DEFAULTS["num_bins"],
        MULTILABEL_DEFAULTS["score_bins"],
    )
    return _named(per_sample, statistics, focal.compute_multilabel(statistics))


def eager_ranking(
    logits: np.ndarray, labels: np.ndarray, ignore_index: int = DEFAULT_IGNORE_INDEX
) -> dict[str, np.ndarray]:
    """Every output of the multi-class ranking graph, from ``focal.update_ranking``."""
    statistics = focal.update_ranking(
        torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)),
        torch.from_numpy(np.asarray(labels, dtype=np.int64)),
        ignore_index,
    )
    return _named(statistics, focal.ranking(*statistics))


def _named(*groups: Any) -> dict[str, np.ndarray]:
    return {
        name: value.numpy()
        for group in groups
        for name, value in zip(group._fields, group, strict=True)
    }


def assert_outputs(got: dict[str, Any], want: dict[str, np.ndarray], where: str) -> None:
    """Each named value of ``got`` equals ``want``'s: integers exactly, floats close."""
    for name, value in got.items():
        if want[name].dtype.kind in "iu":
            assert_exact(value, want[name], f"{where}.{name}")
        else:
            assert_close(value, want[name], f"{where}.{name}")


def near_bin_edge(want: dict[str, np.ndarray], labels: np.ndarray, ignore_index: int) -> bool:
    """Whether a scored confidence lies within 1e-5 of a calibration-bin edge.

    Two runtimes may bin such a sample differently (README, "one documented looseness").
    """
    confidence = want["confidence"][np.asarray(labels).reshape(-1) != ignore_index] * NUM_BINS
    return bool(np.any(np.abs(confidence - np.round(confidence)) < 1e-5 * NUM_BINS))


def assert_close(got: Any, want: np.ndarray, what: str) -> None:
    """Floats within rtol 1e-4 / atol 1e-5; ``null`` where the reference is NaN."""
    want64 = np.asarray(want, dtype=np.float64)
    if want64.ndim == 0 and np.isnan(want64):
        assert got is None, f"{what}: expected null (undefined), got {got}"
        return
    got64 = np.asarray(got, dtype=np.float64)
    assert got64.shape == want64.shape, f"{what}: shape {got64.shape} != {want64.shape}"
    np.testing.assert_allclose(got64, want64, rtol=RTOL, atol=ATOL, err_msg=what)


def assert_exact(got: Any, want: np.ndarray, what: str) -> None:
    """Counts, indices: equal, as integers."""
    got_array = np.asarray(got)
    assert got_array.dtype.kind in "iu", f"{what}: expected integers, got {got_array.dtype}"
    np.testing.assert_array_equal(got_array, np.asarray(want), strict=False, err_msg=what)
    assert got_array.shape == np.asarray(want).shape, what


def assert_score_response(
    document: dict[str, Any],
    want: dict[str, np.ndarray],
    *,
    per_sample: bool = True,
    loose_bins: bool = False,
) -> None:
    """Every number of a ``/score`` response equals the eager reference ``want``.

    ``loose_bins`` skips the calibration bins and the ECE (a confidence on a bin edge).
    """
    skip = BIN_OUTPUTS if loose_bins else ()
    assert set(document["metrics"]) == set(SCALAR_METRICS)
    for name in SCALAR_METRICS:
        if name not in skip:
            assert_close(document["metrics"][name], want[name], f"metrics.{name}")
    assert set(document["per_class"]) == set(PER_CLASS)
    for name in ("precision", "recall", "f1"):
        assert_close(document["per_class"][name], want[name], f"per_class.{name}")
    assert_exact(document["per_class"]["support"], want["support"], "per_class.support")
    assert set(document["statistics"]) == set(STATISTICS)
    for name in STATISTICS:
        if name in skip:
            continue
        if want[name].dtype.kind in "iu":
            assert_exact(document["statistics"][name], want[name], f"statistics.{name}")
        else:
            assert_close(document["statistics"][name], want[name], f"statistics.{name}")
    assert document["valid"] == int(want["confusion_matrix"].sum())
    assert document["num_classes"] == want["confusion_matrix"].shape[0]
    assert document["n"] == want["focal_loss"].shape[0]
    if not per_sample:
        assert "per_sample" not in document or document["per_sample"] is None
        return
    assert set(document["per_sample"]) == set(PER_SAMPLE)
    assert_exact(document["per_sample"]["prediction"], want["prediction"], "prediction")
    for name in ("focal_loss", "cross_entropy", "p_true", "confidence"):
        assert_close(document["per_sample"][name], want[name], f"per_sample.{name}")


def assert_error(response: Any, status: int, message: str, *fragments: str) -> None:
    """Exactly ``status`` with the body ``{"error": ...}``: starting with ``message``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"].startswith(message), body["error"]
    for fragment in fragments:
        assert fragment in body["error"], body["error"]
