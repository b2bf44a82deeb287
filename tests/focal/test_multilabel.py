"""The multi-label (and binary) step, focal_eval.focal.multilabel: counts, losses, statistics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import multilabel_confusion_matrix

from focal_eval.focal import (
    MultilabelMetrics,
    compute_multilabel,
    empty_multilabel_statistics,
    merge_multilabel,
    update_multilabel,
)
from focal_eval.focal.multilabel import sigmoid_focal_terms
from tests.focal._inputs import IGNORE, multilabel_batch
from tests.focal.reference import filled_indicators, sigmoid_focal_loss64


def predictions(logits: torch.Tensor, threshold: float) -> np.ndarray:
    """The reference decisions: torch's float32 sigmoid, compared in float32 as the code does."""
    return torch.sigmoid(logits).numpy() >= np.float32(threshold)


def assert_fields_equal(a: Any, b: Any, rtol: float = 0.0) -> None:
    """Named tuples field by field: integers exactly, floats to ``rtol`` (0: exactly)."""
    for name, x, y in zip(a._fields, a, b, strict=True):
        if x.is_floating_point():
            torch.testing.assert_close(x, y, rtol=rtol, atol=rtol, equal_nan=True, msg=name)
        else:
            assert torch.equal(x, y), name


def confusion_matrices(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """sklearn's per-label matrices; one column is binary data to sklearn: class 1's matrix."""
    if y_true.shape[1] == 1:
        return multilabel_confusion_matrix(y_true[:, 0], y_pred[:, 0], labels=[1])  # type: ignore[no-any-return]
    return multilabel_confusion_matrix(y_true, y_pred)  # type: ignore[no-any-return]


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.7, 0.9])
@pytest.mark.parametrize(
    ("n", "num_labels", "ignore_fraction"),
    [
        pytest.param(200, 1, 0.0, id="one-label"),
        pytest.param(300, 5, 0.0, id="five"),
        pytest.param(300, 5, 0.3, id="five-ignore"),
        pytest.param(64, 40, 0.2, id="many-labels"),
    ],
)
def test_counts_equal_sklearn_multilabel_confusion_matrix(
    threshold: float, n: int, num_labels: int, ignore_fraction: float
) -> None:
    """Ignored elements enter sklearn as true negatives, so TN is sklearn's less their count."""
    logits, targets = multilabel_batch(n, n, num_labels, ignore_fraction=ignore_fraction)
    _, stats = update_multilabel(logits, targets, threshold=threshold)
    valid = targets.numpy() != IGNORE
    y_true, y_pred, rows = filled_indicators(
        targets.numpy(), predictions(logits, threshold), IGNORE
    )
    matrices = confusion_matrices(y_true, y_pred)  # (L, 2, 2): [[tn, fp], [fn, tp]]
    ignored = (~valid[rows]).sum(axis=0)
    np.testing.assert_array_equal(stats.true_negative.numpy(), matrices[:, 0, 0] - ignored)
    np.testing.assert_array_equal(stats.false_positive.numpy(), matrices[:, 0, 1])
    np.testing.assert_array_equal(stats.false_negative.numpy(), matrices[:, 1, 0])
    np.testing.assert_array_equal(stats.true_positive.numpy(), matrices[:, 1, 1])
    assert int(stats.samples) == int(rows.sum())


def test_threshold_is_inclusive() -> None:
    """p = sigmoid(0) = 0.5 exactly is predicted positive at threshold 0.5; just below is not."""
    logits = torch.tensor([0.0, -1e-6, 0.0, -1e-6])
    per_sample, stats = update_multilabel(logits, torch.tensor([1, 1, 0, 0]))
    assert per_sample.label_errors.tolist() == [0, 1, 1, 0]
    assert (stats.true_positive.item(), stats.false_negative.item()) == (1, 1)
    assert (stats.false_positive.item(), stats.true_negative.item()) == (1, 1)


def test_binary_input_is_one_label() -> None:
    logits, targets = multilabel_batch(1, 50, 1)
    flat = update_multilabel(logits[:, 0], targets[:, 0], gamma=1.5, threshold=0.4)
    column = update_multilabel(logits, targets, gamma=1.5, threshold=0.4)
    assert_fields_equal(flat[0], column[0])
    assert_fields_equal(flat[1], column[1])


def binary_logits() -> tuple[torch.Tensor, torch.Tensor]:
    """Moderate, large and extreme logits with both targets (per-sample value = per element)."""
    generator = torch.Generator().manual_seed(2)
    moderate = torch.randn(64, generator=generator) * 3
    extreme = torch.tensor([1e4, -1e4, 30.0, -30.0, 88.0, -88.0, 0.0, 1e-3])
    logits = torch.cat([moderate, extreme, extreme])
    targets = torch.cat(
        [torch.randint(0, 2, (64,), generator=generator), torch.zeros(8), torch.ones(8)]
    ).long()
    return logits, targets


@pytest.mark.parametrize("alpha", [0.25, -1.0, 1.0])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_focal_loss_per_element_equals_float64_reference(alpha: float, gamma: float) -> None:
    """torchvision's formula alpha_t (1 - p_t)^gamma BCE, written with np.logaddexp."""
    logits, targets = binary_logits()
    per_sample, stats = update_multilabel(logits, targets, alpha=alpha, gamma=gamma)
    expected = sigmoid_focal_loss64(logits.numpy(), targets.numpy(), alpha, gamma)
    assert torch.isfinite(per_sample.focal_loss).all()
    np.testing.assert_allclose(per_sample.focal_loss.numpy(), expected, rtol=5e-5, atol=1e-30)
    np.testing.assert_allclose(stats.focal_loss_sum.numpy(), [expected.sum()], rtol=1e-6)
    _, unweighted = sigmoid_focal_terms(logits, targets == 1, torch.tensor(gamma))
    expected_unweighted = sigmoid_focal_loss64(logits.numpy(), targets.numpy(), -1.0, gamma)
    np.testing.assert_allclose(unweighted.numpy(), expected_unweighted, rtol=5e-5, atol=1e-30)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_gamma_zero_without_alpha_is_binary_cross_entropy(gamma: float) -> None:
    """The focal loss at gamma 0, alpha < 0, and the BCE field at any gamma."""
    logits, targets = binary_logits()
    per_sample, _ = update_multilabel(logits, targets, alpha=-1.0, gamma=gamma)
    bce = F.binary_cross_entropy_with_logits(logits, targets.float(), reduction="none")
    torch.testing.assert_close(per_sample.binary_cross_entropy, bce)
    if gamma == 0.0:
        torch.testing.assert_close(per_sample.focal_loss, bce)


def test_per_sample_values_are_sums_over_labels_not_ignored() -> None:
    logits, targets = multilabel_batch(3, 80, 6, scale=4.0, ignore_fraction=0.3)
    targets[0] = IGNORE  # a sample with every label ignored: zeros
    per_sample, _ = update_multilabel(logits, targets, alpha=0.25, gamma=2.0, threshold=0.6)
    x, t = logits.numpy(), targets.numpy()
    valid = t != IGNORE
    safe = np.where(valid, t, 0)
    focal = np.where(valid, sigmoid_focal_loss64(x, safe, 0.25, 2.0), 0.0).sum(axis=1)
    bce = np.where(valid, sigmoid_focal_loss64(x, safe, -1.0, 0.0), 0.0).sum(axis=1)
    errors = (valid & (predictions(logits, 0.6) != (t == 1))).sum(axis=1)
    np.testing.assert_allclose(per_sample.focal_loss.numpy(), focal, rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(per_sample.binary_cross_entropy.numpy(), bce, rtol=1e-5)
    np.testing.assert_array_equal(per_sample.label_errors.numpy(), errors)
    assert per_sample.focal_loss[0].item() == 0.0


@pytest.mark.parametrize("scripted", [False, True], ids=["eager", "scripted"])
def test_everything_is_finite_at_extreme_logits(scripted: bool) -> None:
    step = torch.jit.script(update_multilabel) if scripted else update_multilabel
    logits = torch.tensor([[1e4, -1e4], [-1e4, 1e4], [1e4, 1e4], [-1e4, -1e4]])
    targets = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1]])
    for gamma in [0.0, 0.5, 2.0]:
        per_sample, stats = step(logits, targets, 0.25, gamma)
        for name, value in [*per_sample._asdict().items(), *stats._asdict().items()]:
            assert torch.isfinite(value.double()).all(), name
        # BCE of a confidently wrong decision is |x|: per label 1e4 (wrong twice) -> 2e4
        assert stats.binary_cross_entropy_sum.tolist() == [2e4, 2e4]
        metrics = compute_multilabel(stats)
        for name, value in metrics._asdict().items():
            assert torch.isfinite(value.double()).all(), name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_logits_are_computed_in_float32(dtype: torch.dtype) -> None:
    logits, targets = multilabel_batch(4, 100, 3, scale=6.0)
    half = logits.to(dtype)
    per_sample, stats = update_multilabel(half, targets, threshold=0.3)
    assert per_sample.focal_loss.dtype == torch.float32
    expected = update_multilabel(half.float(), targets, threshold=0.3)
    assert_fields_equal(per_sample, expected[0])
    assert_fields_equal(stats, expected[1])


def test_uint8_targets_with_an_ignore_value_they_hold_equal_int64() -> None:
    logits, targets = multilabel_batch(5, 40, 3)
    masks = torch.where(targets == IGNORE, 255, targets).to(torch.uint8)
    got = update_multilabel(logits, masks, ignore_index=255)
    expected = update_multilabel(logits, targets)
    assert_fields_equal(got[0], expected[0])
    assert_fields_equal(got[1], expected[1])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(2, 80),
    num_labels=st.integers(1, 8),
    split=st.floats(0.0, 1.0),
    ignore_fraction=st.sampled_from([0.0, 0.3, 1.0]),
    threshold=st.sampled_from([0.2, 0.5, 0.8]),
)
def test_merged_statistics_equal_statistics_of_concatenation(
    seed: int, n: int, num_labels: int, split: float, ignore_fraction: float, threshold: float
) -> None:
    logits, targets = multilabel_batch(seed, n, num_labels, ignore_fraction=ignore_fraction)
    k = int(split * n)

    def step(rows: slice) -> Any:
        return update_multilabel(logits[rows], targets[rows], threshold=threshold, num_bins=10)[1]

    merged = merge_multilabel(step(slice(None, k)), step(slice(k, None)))
    whole = step(slice(None))
    # float fields sum float32 elements, and torch's vectorized softplus may differ from its
    # scalar tail by an ulp: a batch split elsewhere rounds some elements differently
    assert_fields_equal(merged, whole, rtol=1e-6)
    metrics = compute_multilabel(merged)
    assert isinstance(metrics, MultilabelMetrics)
    assert_fields_equal(metrics, compute_multilabel(whole), rtol=1e-6)


@pytest.mark.parametrize(("num_bins", "score_bins"), [(1, 1), (15, 100)])
def test_empty_statistics_are_zero_and_the_identity_of_merge(
    num_bins: int, score_bins: int
) -> None:
    logits, targets = multilabel_batch(6, 30, 4)
    stats = update_multilabel(logits, targets, num_bins=num_bins, score_bins=score_bins)[1]
    empty = empty_multilabel_statistics(4, num_bins, score_bins)
    for name, zero, value in zip(stats._fields, empty, stats, strict=True):
        assert (zero.dtype, zero.shape) == (value.dtype, value.shape), name
        assert not zero.any(), name
    merge: Callable[[Any, Any], Any] = merge_multilabel
    assert_fields_equal(merge(empty, stats), stats)
    assert_fields_equal(merge(stats, empty), stats)
