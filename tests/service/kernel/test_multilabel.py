"""The multi-label op's numbers against float64 formulas and numpy counts.

Held out from the export's sweep: L up to 2,000, logits to 1e4 (every p saturated at 0 or 1,
the last score bin), every target ignored, all positive, all negative, N = 1 and N = 0, and
the same result for any thread count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from focal_eval.service.kernel import NON_FINITE
from tests.service.kernel._fused import IGNORE, assert_counts, near_edges, run_fused, scalar

BINS, SCORE_BINS = 15, 100


def run(
    logits: npt.NDArray[np.float32],
    targets: npt.NDArray[np.int64],
    alpha: float = 0.25,
    gamma: float = 2.0,
    threshold: float = 0.5,
    threads: int = 2,
) -> dict[str, npt.NDArray[Any]]:
    feeds: dict[str, npt.NDArray[Any]] = {
        "logits": logits,
        "targets": targets,
        "alpha": scalar(alpha),
        "gamma": scalar(gamma),
        "threshold": scalar(threshold),
        "ignore_index": scalar(IGNORE, np.int64),
    }
    return run_fused("fused_multilabel_evaluation", feeds, threads)


def reference(
    logits: npt.NDArray[np.float32],
    targets: npt.NDArray[np.int64],
    alpha: float,
    gamma: float,
    threshold: float,
) -> dict[str, Any]:
    """Every output in float64 (numpy), from the formulas of focal/multilabel.py."""
    x = logits.astype(np.float64)
    valid = targets != IGNORE
    positive = valid & (targets == 1)
    signed = np.where(positive, x, -x)
    bce = np.logaddexp(0.0, -signed)
    p_t = np.exp(-bce)
    weight = (np.where(positive, alpha, 1 - alpha)) if alpha >= 0 else np.ones_like(x)
    focal = np.where(valid, weight * (1 - p_t) ** gamma * bce, 0.0)
    bce = np.where(valid, bce, 0.0)
    p = np.exp(-np.logaddexp(0.0, -x))  # the sigmoid, without overflow
    predicted = p >= threshold
    wrong = valid & (positive != predicted)
    hits = (positive & predicted).sum(1)
    errors = wrong.sum(1)
    has = valid.any(1)
    denominator = 2 * hits + errors
    f1 = np.where(denominator > 0, 2 * hits / np.maximum(denominator, 1), 0.0)
    calibration = np.clip(np.ceil(p * BINS) - 1, 0, BINS - 1).astype(int)
    score = np.minimum((p * SCORE_BINS).astype(int), SCORE_BINS - 1)
    labels = np.broadcast_to(np.arange(x.shape[1]), x.shape)

    def histogram(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        table = np.zeros((x.shape[1], SCORE_BINS), np.int64)
        np.add.at(table, (labels[mask], score[mask]), 1)
        return table

    return {
        "p": p,
        "focal_loss": focal.sum(1),
        "binary_cross_entropy": bce.sum(1),
        "label_errors": errors,
        "true_positive": (positive & predicted).sum(0),
        "false_positive": (valid & ~positive & predicted).sum(0),
        "false_negative": (positive & ~predicted).sum(0),
        "true_negative": (valid & ~positive & ~predicted).sum(0),
        "focal_loss_sum": focal.sum(0),
        "binary_cross_entropy_sum": bce.sum(0),
        "brier_sum": np.where(valid, (p - positive) ** 2, 0.0).sum(0),
        "bin_count": np.bincount(calibration[valid], minlength=BINS),
        "bin_probability_sum": np.bincount(calibration[valid], p[valid], BINS),
        "bin_positive": np.bincount(calibration[positive], minlength=BINS),
        "samples": has.sum(),
        "exact_matches": (has & (errors == 0)).sum(),
        "sample_f1_sum": f1[has].sum(),
        "positive_histogram": histogram(positive),
        "negative_histogram": histogram(valid & ~positive),
    }


THRESHOLD_OUTPUTS = (
    *("label_errors", "true_positive", "false_positive", "false_negative"),
    *("true_negative", "exact_matches"),
)
CALIBRATION_OUTPUTS = ("bin_count", "bin_positive")
SCORE_OUTPUTS = ("positive_histogram", "negative_histogram")


def assert_matches(
    got: dict[str, npt.NDArray[Any]],
    want: dict[str, Any],
    valid: npt.NDArray[np.bool_],
    threshold: float,
) -> None:
    """Floats to the parity tolerance; counts exact but for decisions float32 may flip."""
    p = want["p"][valid]
    moved = {
        **dict.fromkeys(THRESHOLD_OUTPUTS, near_edges(p - threshold, 1, 1e-6)),
        **dict.fromkeys(CALIBRATION_OUTPUTS, near_edges(p, BINS)),
        **dict.fromkeys(SCORE_OUTPUTS, near_edges(p, SCORE_BINS)),
    }
    for name, value in got.items():
        expected = np.asarray(want[name])
        if value.dtype.kind == "i":
            assert_counts(value, expected, moved.get(name, 0), name)
        else:
            # a calibration bin's sum of p moves with its samples
            atol = 1e-5 + (moved["bin_count"] if name == "bin_probability_sum" else 0)
            np.testing.assert_allclose(value, expected, rtol=1e-4, atol=atol, err_msg=name)


CASES = [
    pytest.param(n, labels, scale, alpha, gamma, id=f"N={n}-L={labels}-scale={scale:g}-a={alpha}")
    for n, labels, scale, alpha, gamma in (
        (3000, 1, 2.0, 0.25, 2.0),
        (2000, 7, 3.0, -1.0, 0.5),
        (500, 100, 1.0, 0.25, 0.0),
        (40, 2000, 4.0, 0.75, 5.0),
        (200, 9, 1e4, 0.25, 2.0),
        (1, 5, 2.0, 0.25, 1.0),
    )
]


@pytest.mark.parametrize(("n", "labels", "scale", "alpha", "gamma"), CASES)
def test_outputs_equal_the_float64_formulas(
    n: int, labels: int, scale: float, alpha: float, gamma: float
) -> None:
    rng = np.random.default_rng(n + labels)
    logits = (scale * rng.standard_normal((n, labels))).astype(np.float32)
    targets = (rng.random((n, labels)) < 0.3).astype(np.int64)
    targets[rng.random((n, labels)) < 0.1] = IGNORE
    want = reference(logits, targets, alpha, gamma, 0.4)
    assert_matches(run(logits, targets, alpha, gamma, 0.4), want, targets != IGNORE, 0.4)


@pytest.mark.parametrize(
    "fill", [IGNORE, 0, 1], ids=["all-ignored", "all-negative", "all-positive"]
)
def test_uniform_targets(fill: int) -> None:
    logits = np.random.default_rng(3).standard_normal((300, 4)).astype(np.float32)
    targets = np.full((300, 4), fill, np.int64)
    got = run(logits, targets)
    assert_matches(got, reference(logits, targets, 0.25, 2.0, 0.5), targets != IGNORE, 0.5)
    if fill == IGNORE:
        assert int(got["samples"]) == 0
        assert not got["bin_count"].any()


def test_no_rows() -> None:
    got = run(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64))
    assert got["positive_histogram"].shape == (3, SCORE_BINS)
    assert all(not value.any() for value in got.values())


def test_statistics_do_not_depend_on_the_thread_count() -> None:
    rng = np.random.default_rng(9)
    logits = (2 * rng.standard_normal((20_000, 13))).astype(np.float32)
    targets = (rng.random((20_000, 13)) < 0.4).astype(np.int64)
    one, two = run(logits, targets, threads=1), run(logits, targets, threads=2)
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)


def test_a_target_that_is_not_0_1_or_ignored_is_an_error() -> None:
    targets = np.zeros((4, 3), np.int64)
    targets[2, 1] = 2
    with pytest.raises(Exception, match=r"FocalMultilabelEvaluation: targets must be 0, 1 or"):
        run(np.zeros((4, 3), np.float32), targets)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "minus_inf"])
def test_a_non_finite_logit_fails_the_run(value: float) -> None:
    logits = np.random.default_rng(4).standard_normal((3000, 21)).astype(np.float32)
    logits[2999, 20] = value  # the last part's last row, the last label
    with pytest.raises(Exception, match=f"FocalMultilabelEvaluation: {NON_FINITE}"):
        run(logits, np.zeros((3000, 21), np.int64))
