from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

from focal_eval.focal import (
    Evaluator,
    Metrics,
    compute,
    empty_statistics,
    merge,
    softmax_focal_loss,
    update,
)
from tests.focal.reference import expected_calibration_error64, focal_loss64, softmax64

IGNORE = -100


def batch(
    seed: int, n: int, c: int, scale: float = 2.0, ignore_fraction: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    logits = torch.from_numpy((rng.standard_normal((n, c)) * scale).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, c, n))
    labels[torch.from_numpy(rng.random(n) < ignore_fraction)] = IGNORE
    return logits, labels


def check_against_sklearn(
    logits: torch.Tensor, labels: torch.Tensor, alpha: torch.Tensor | None, gamma: float
) -> Metrics:
    per_sample, stats = update(logits, labels, alpha, gamma)
    metrics = compute(stats)
    c = logits.shape[1]
    valid = labels.numpy() != IGNORE
    y = labels.numpy()[valid]
    x = logits.numpy()[valid]
    pred = x.argmax(axis=1)
    probs = softmax64(x)
    classes = list(range(c))

    np.testing.assert_array_equal(
        stats.confusion_matrix.numpy(), confusion_matrix(y, pred, labels=classes)
    )
    assert metrics.accuracy.item() == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert metrics.balanced_accuracy.item() == pytest.approx(
        balanced_accuracy_score(y, pred), abs=1e-12
    )
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=classes, zero_division=0
    )
    np.testing.assert_allclose(metrics.precision.numpy(), precision, atol=1e-12)
    np.testing.assert_allclose(metrics.recall.numpy(), recall, atol=1e-12)
    np.testing.assert_allclose(metrics.f1.numpy(), f1, atol=1e-12)
    np.testing.assert_array_equal(metrics.support.numpy(), support)
    macro = f1_score(y, pred, average="macro", zero_division=0)
    assert metrics.macro_f1.item() == pytest.approx(macro, abs=1e-12)
    weighted = f1_score(y, pred, average="weighted", zero_division=0)
    assert metrics.weighted_f1.item() == pytest.approx(weighted, abs=1e-12)
    assert metrics.matthews_corrcoef.item() == pytest.approx(matthews_corrcoef(y, pred), abs=1e-9)
    assert metrics.mean_cross_entropy.item() == pytest.approx(
        log_loss(y, probs, labels=classes), rel=1e-5
    )
    brier = brier_score_loss(y, probs[:, 1] if c == 2 else probs, labels=classes)
    assert metrics.brier_score.item() == pytest.approx(brier * (2 if c == 2 else 1), abs=1e-6)

    focal = focal_loss64(x, y, None if alpha is None else alpha.numpy(), gamma)
    assert metrics.mean_focal_loss.item() == pytest.approx(focal.mean(), rel=1e-5)
    per_class_mean = [focal[y == k].mean() for k in classes if (y == k).any()]
    assert metrics.class_balanced_focal_loss.item() == pytest.approx(
        np.mean(per_class_mean), rel=1e-5
    )
    confidence = per_sample.confidence.numpy()[valid].astype(np.float64)
    ece = expected_calibration_error64(confidence, pred == y, 15)
    assert metrics.expected_calibration_error.item() == pytest.approx(ece, abs=1e-6)
    return metrics


@pytest.mark.parametrize(
    ("seed", "n", "c"),
    [
        pytest.param(0, 300, 2, id="binary"),
        pytest.param(1, 300, 3, id="three"),
        pytest.param(2, 500, 7, id="seven"),
        pytest.param(3, 40, 12, id="few-samples-many-classes"),
    ],
)
@pytest.mark.parametrize("weighted", [False, True])
def test_metrics_equal_sklearn(seed: int, n: int, c: int, weighted: bool) -> None:
    logits, labels = batch(seed, n, c)
    alpha = torch.rand(c, generator=torch.Generator().manual_seed(seed)) + 0.1 if weighted else None
    check_against_sklearn(logits, labels, alpha, 2.0)


def test_alpha_weighted_focal_loss_equals_the_losss_mean() -> None:
    logits, labels = batch(4, 200, 5)
    alpha = torch.tensor([0.2, 0.5, 1.0, 2.0, 3.0])
    metrics = compute(update(logits, labels, alpha, 1.5)[1])
    expected = softmax_focal_loss(logits.double(), labels, alpha.double(), 1.5)
    assert metrics.alpha_weighted_focal_loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_per_sample_values() -> None:
    logits, labels = batch(5, 64, 4)
    per_sample, _ = update(logits, labels, None, 2.0)
    valid = labels.numpy() != IGNORE
    probs = softmax64(logits.numpy())
    safe = np.where(valid, labels.numpy(), 0)
    p_true = np.where(valid, probs[np.arange(64), safe], 0.0)
    np.testing.assert_allclose(per_sample.p_true.numpy(), p_true, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        per_sample.cross_entropy.numpy(), np.where(valid, -np.log(p_true + ~valid), 0), rtol=1e-5
    )
    np.testing.assert_allclose(
        per_sample.focal_loss.numpy(),
        focal_loss64(logits.numpy(), labels.numpy(), None, 2.0),
        rtol=1e-4,
        atol=1e-6,
    )
    np.testing.assert_array_equal(per_sample.prediction.numpy(), logits.numpy().argmax(axis=1))
    np.testing.assert_allclose(per_sample.confidence.numpy(), probs.max(axis=1), rtol=1e-5)


@pytest.mark.parametrize("margin", [10.0, 13.0, 16.0])
def test_brier_keeps_its_digits_where_the_true_class_is_nearly_certain(margin: float) -> None:
    # one row a class, so that brier_sum is each row's score; p_y = 1 - about e^-margin
    c = 6
    logits = torch.randn(c, c, generator=torch.Generator().manual_seed(3)) * 0.5
    logits[torch.arange(c), torch.arange(c)] += margin
    _, stats = update(logits, torch.arange(c), None, 2.0)
    probs = softmax64(logits.numpy())
    others = probs * (1 - np.eye(c))
    want = (others**2).sum(1) + others.sum(1) ** 2  # float64, no cancellation either
    assert np.all(want < 1e-6)  # sum p^2 - 2 p_y + 1 in float32 loses most of these digits
    np.testing.assert_allclose(stats.brier_sum.numpy(), want, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true:UserWarning")
def test_class_absent_from_labels() -> None:
    logits, labels = batch(6, 200, 4, ignore_fraction=0.0)
    labels[labels == 2] = 0
    metrics = check_against_sklearn(logits, labels, None, 2.0)
    assert metrics.support[2].item() == 0
    assert metrics.recall[2].item() == 0.0


@pytest.mark.filterwarnings("ignore:A single label was found in 'y_true' and 'y_pred':UserWarning")
def test_single_class_everywhere() -> None:
    logits = torch.tensor([[3.0, 0.0, 0.0]] * 10)
    labels = torch.zeros(10, dtype=torch.long)
    metrics = check_against_sklearn(logits, labels, None, 2.0)
    assert metrics.accuracy.item() == 1.0
    assert metrics.matthews_corrcoef.item() == 0.0  # undefined; sklearn's convention


def test_everything_ignored_gives_nan_scalars_and_zero_per_class() -> None:
    logits, _ = batch(7, 20, 3)
    _, stats = update(logits, torch.full((20,), IGNORE), None, 2.0)
    metrics = compute(stats)
    assert int(stats.confusion_matrix.sum()) == 0
    for name, value in metrics._asdict().items():
        if value.dim() == 0:
            assert math.isnan(value.item()), name
        else:
            assert torch.equal(value, torch.zeros_like(value)), name


def test_equal_rows_predict_the_first_class() -> None:
    per_sample, stats = update(torch.zeros(4, 3), torch.tensor([0, 1, 2, 2]), None, 2.0)
    assert per_sample.prediction.tolist() == [0, 0, 0, 0]
    np.testing.assert_allclose(per_sample.confidence.numpy(), [1 / 3] * 4, rtol=1e-6)
    assert stats.confusion_matrix[:, 0].tolist() == [1, 1, 2]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(2, 120),
    c=st.integers(2, 12),
    split=st.floats(0.0, 1.0),
    ignore_fraction=st.sampled_from([0.0, 0.3, 1.0]),
)
def test_merged_statistics_equal_statistics_of_concatenation(
    seed: int, n: int, c: int, split: float, ignore_fraction: float
) -> None:
    logits, labels = batch(seed, n, c, ignore_fraction=ignore_fraction)
    k = int(split * n)
    alpha = torch.rand(c, generator=torch.Generator().manual_seed(seed))
    merged = merge(
        update(logits[:k], labels[:k], alpha)[1], update(logits[k:], labels[k:], alpha)[1]
    )
    whole = update(logits, labels, alpha)[1]
    for name, a, b in zip(whole._fields, merged, whole, strict=True):
        if a.dtype == torch.long:
            assert torch.equal(a, b), name
        else:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)
    for name, a, b in zip(Metrics._fields, compute(merged), compute(whole), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, equal_nan=True, msg=name)


@pytest.mark.parametrize("num_bins", [1, 15])
def test_empty_statistics_are_zero_and_the_identity_of_merge(num_bins: int) -> None:
    logits, labels = batch(3, 40, 4)
    statistics = update(logits, labels, num_bins=num_bins)[1]
    empty = empty_statistics(4, num_bins)
    for name, zero, value in zip(statistics._fields, empty, statistics, strict=True):
        assert zero.dtype == value.dtype, name
        assert zero.shape == value.shape, name
        assert not zero.any(), name
    for name, a, b in zip(statistics._fields, merge(empty, statistics), statistics, strict=True):
        assert torch.equal(a, b), name


def test_evaluator_over_batches_equals_one_update() -> None:
    logits, labels = batch(8, 300, 5)
    alpha = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])
    evaluator = Evaluator(5, alpha, gamma=1.0)
    for start in range(0, 300, 64):
        evaluator.update(logits[start : start + 64], labels[start : start + 64])
    expected = compute(update(logits, labels, alpha, 1.0)[1])
    for name, a, b in zip(Metrics._fields, evaluator.compute(), expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)


def test_evaluator_merge_and_reset() -> None:
    logits, labels = batch(9, 100, 3)
    first, second = Evaluator(3), Evaluator(3)
    first.update(logits[:60], labels[:60])
    second.update(logits[60:], labels[60:])
    first.merge(second)
    expected = update(logits, labels)[1]
    assert torch.equal(first.statistics.confusion_matrix, expected.confusion_matrix)
    first.reset()
    assert int(first.statistics.confusion_matrix.sum()) == 0
    assert math.isnan(first.compute().accuracy.item())


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(Evaluator(4), id="classes"),
        pytest.param(Evaluator(3, gamma=1.0), id="gamma"),
        pytest.param(Evaluator(3, alpha=[1.0, 2.0, 3.0]), id="alpha"),
        pytest.param(Evaluator(3, num_bins=10), id="bins"),
        pytest.param(Evaluator(3, ignore_index=-1), id="ignore_index"),
    ],
)
def test_evaluator_merge_refuses_a_different_configuration(other: Evaluator) -> None:
    with pytest.raises(ValueError, match="Expected an evaluator with the same num_classes"):
        Evaluator(3).merge(other)
