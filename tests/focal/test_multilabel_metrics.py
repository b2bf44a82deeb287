"""Multi-label metrics, focal_eval.focal.multilabel_metrics, against scikit-learn and float64."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from focal_eval.focal import MultilabelMetrics, compute_multilabel, update_multilabel
from tests.focal._inputs import IGNORE, multilabel_batch
from tests.focal.reference import (
    binned_scores64,
    expected_calibration_error64,
    filled_indicators,
    sigmoid_focal_loss64,
)

CASES = [
    pytest.param(0, 300, 1, 0.0, False, id="one-label"),
    pytest.param(1, 300, 1, 0.2, True, id="binary-shape-N"),
    pytest.param(2, 200, 5, 0.0, False, id="five"),
    pytest.param(3, 200, 5, 0.3, False, id="five-ignore"),
    pytest.param(4, 60, 100, 0.1, False, id="many-labels"),
]


def batch(
    seed: int, n: int, num_labels: int, ignore_fraction: float, flat: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    logits, targets = multilabel_batch(seed, n, num_labels, ignore_fraction=ignore_fraction)
    return (logits[:, 0], targets[:, 0]) if flat else (logits, targets)


def as_matrix(values: torch.Tensor) -> np.ndarray:
    """``(N,)`` binary input as the ``(N, 1)`` matrix it stands for."""
    array: np.ndarray = values.numpy()
    return array.reshape(len(array), -1)


def exact(expected: float) -> Any:
    """``pytest.approx`` to 1e-12: float64 arithmetic in another order."""
    return pytest.approx(expected, rel=0, abs=1e-12)


def sklearn_indicators(targets: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``filled_indicators``; one label gets a second that is never positive nor predicted.

    sklearn reads a single column as binary data (no ``average="samples"``). The extra label
    changes no sample's F1 or exactness, no micro count, and has support 0 (weight 0).
    """
    y_true, y_pred, _ = filled_indicators(targets, predicted, IGNORE)
    if y_true.shape[1] == 1:
        zeros = np.zeros_like(y_true)
        return np.hstack([y_true, zeros]), np.hstack([y_pred, zeros])
    return y_true, y_pred


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.75])
@pytest.mark.parametrize(("seed", "n", "num_labels", "ignore_fraction", "flat"), CASES)
def test_decision_metrics_equal_sklearn(
    threshold: float, seed: int, n: int, num_labels: int, ignore_fraction: float, flat: bool
) -> None:
    """On the decisions p >= threshold (torch's float32 sigmoid, compared in float32).

    Ignored elements enter sklearn as true negatives (see ``filled_indicators``): F1s, subset
    accuracy and precision/recall are unchanged by them; Hamming loss counts them as decisions,
    so sklearn's value is rescaled to the decisions not ignored.
    """
    logits, targets = batch(seed, n, num_labels, ignore_fraction, flat)
    metrics = compute_multilabel(update_multilabel(logits, targets, threshold=threshold)[1])
    t = as_matrix(targets)
    predicted = as_matrix(torch.sigmoid(logits)) >= np.float32(threshold)
    y_true, y_pred = sklearn_indicators(t, predicted)
    labels = t.shape[1]
    decisions = int((t != IGNORE).sum())

    def close(value: torch.Tensor, expected: float) -> None:
        assert value.item() == pytest.approx(expected, abs=1e-12)

    for average in ["micro", "weighted", "samples"]:
        expected = f1_score(y_true, y_pred, average=average, zero_division=0)
        close(getattr(metrics, f"{average}_f1"), expected)
    if labels == 1:  # one label's macro F1 is its F1 (binary data to sklearn)
        close(metrics.macro_f1, f1_score(y_true[:, 0], y_pred[:, 0], zero_division=0))
    else:
        close(metrics.macro_f1, f1_score(y_true, y_pred, average="macro", zero_division=0))
    close(metrics.subset_accuracy, accuracy_score(y_true, y_pred))
    close(metrics.hamming_loss, hamming_loss(y_true, y_pred) * y_true.size / decisions)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, average=None, zero_division=0
    )
    np.testing.assert_allclose(metrics.precision.numpy(), precision[:labels], rtol=0, atol=1e-12)
    np.testing.assert_allclose(metrics.recall.numpy(), recall[:labels], rtol=0, atol=1e-12)
    np.testing.assert_allclose(metrics.f1.numpy(), f1[:labels], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(metrics.support.numpy(), support[:labels])


@pytest.mark.parametrize("score_bins", [1, 10, 100, 1000])
@pytest.mark.parametrize(("seed", "n", "num_labels", "ignore_fraction", "flat"), CASES)
def test_binned_ranking_equals_sklearn_on_rounded_scores(
    score_bins: int, seed: int, n: int, num_labels: int, ignore_fraction: float, flat: bool
) -> None:
    """sklearn on the scores rounded down to their bin's lower edge, floor(p H) / H (p = 1 in
    the last bin): the histograms hold exactly these scores. ``roc_auc_score`` counts a tied
    positive-negative pair half (the Mann-Whitney statistic), as the histograms count a pair
    within one bin; ``average_precision_score`` takes one threshold per distinct score.

    Per label on its elements not ignored; macro the mean over labels; micro on the pooled
    elements (sklearn's ``average="micro"`` ravels the matrices).
    """
    logits, targets = batch(seed, n, num_labels, ignore_fraction, flat)
    metrics = compute_multilabel(update_multilabel(logits, targets, score_bins=score_bins)[1])
    t = as_matrix(targets)
    scores = binned_scores64(as_matrix(torch.sigmoid(logits)), score_bins)
    valid = t != IGNORE
    columns = [(t[valid[:, k], k], scores[valid[:, k], k]) for k in range(t.shape[1])]
    auroc = [roc_auc_score(y, s) for y, s in columns]
    average_precision = [average_precision_score(y, s) for y, s in columns]
    np.testing.assert_allclose(metrics.auroc.numpy(), auroc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(metrics.average_precision.numpy(), average_precision, atol=1e-12)
    assert metrics.macro_auroc.item() == exact(np.mean(auroc))
    assert metrics.macro_average_precision.item() == exact(np.mean(average_precision))
    micro = roc_auc_score(t[valid], scores[valid])
    assert metrics.micro_auroc.item() == exact(micro)
    micro = average_precision_score(t[valid], scores[valid])
    assert metrics.micro_average_precision.item() == exact(micro)
    if valid.all() and t.shape[1] > 1:  # the same from sklearn's own averages
        for average in ["macro", "micro"]:
            expected = roc_auc_score(t, scores, average=average)
            assert getattr(metrics, f"{average}_auroc").item() == exact(expected)
            expected = average_precision_score(t, scores, average=average)
            value = getattr(metrics, f"{average}_average_precision").item()
            assert value == exact(expected)


def test_labels_without_positives_or_negatives() -> None:
    """No positives: AUROC and AP NaN; no negatives: AUROC NaN, AP 1 (every precision is 1).
    Macro averages skip the NaN; micro ones pool every label's elements."""
    logits = torch.tensor([[2.0, 0.3, -1.0], [-0.5, 1.2, 0.4], [0.7, -2.0, 3.0], [-1.5, 0.0, 0.1]])
    targets = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    metrics = compute_multilabel(update_multilabel(logits, targets)[1])
    scores = binned_scores64(torch.sigmoid(logits).numpy(), 100)
    assert math.isnan(metrics.auroc[1].item())
    assert math.isnan(metrics.average_precision[1].item())
    assert math.isnan(metrics.auroc[2].item())
    assert metrics.average_precision[2].item() == 1.0
    assert metrics.macro_auroc.item() == metrics.auroc[0].item() == 1.0
    expected = (metrics.average_precision[0].item() + 1.0) / 2
    assert metrics.macro_average_precision.item() == pytest.approx(expected, rel=0, abs=1e-15)
    micro = roc_auc_score(targets.numpy().ravel(), scores.ravel())
    assert metrics.micro_auroc.item() == pytest.approx(micro, rel=0, abs=1e-12)
    micro = average_precision_score(targets.numpy().ravel(), scores.ravel())
    assert metrics.micro_average_precision.item() == pytest.approx(micro, rel=0, abs=1e-12)


def test_no_positive_targets_give_zero_f1_like_sklearn() -> None:
    logits, _ = multilabel_batch(5, 40, 3)
    targets = torch.zeros(40, 3, dtype=torch.long)
    metrics = compute_multilabel(update_multilabel(logits, targets)[1])
    predicted = (torch.sigmoid(logits) >= 0.5).numpy().astype(np.int64)
    assert predicted.any()
    for average in ["micro", "macro", "weighted", "samples"]:
        expected = f1_score(targets.numpy(), predicted, average=average, zero_division=0)
        assert getattr(metrics, f"{average}_f1").item() == expected == 0.0
    assert math.isnan(metrics.macro_auroc.item())
    assert math.isnan(metrics.micro_average_precision.item())


def test_everything_ignored_gives_nan_scalars() -> None:
    logits, _ = multilabel_batch(6, 20, 3)
    stats = update_multilabel(logits, torch.full((20, 3), IGNORE))[1]
    metrics = compute_multilabel(stats)
    assert int(stats.samples) == 0
    for name, value in metrics._asdict().items():
        if value.dim() == 0:
            assert math.isnan(value.item()), name
        elif name in ("auroc", "average_precision"):
            assert torch.isnan(value).all(), name
        else:
            assert not value.any(), name


def test_losses_brier_and_calibration_equal_float64_references() -> None:
    """Means over the decisions not ignored; ECE over the bins (b/B, (b+1)/B] of p with the
    targets as outcomes (the binary form), from the loop in ``reference``."""
    logits, targets = multilabel_batch(7, 300, 4, scale=3.0, ignore_fraction=0.2)
    stats = update_multilabel(logits, targets, alpha=0.4, gamma=1.5, num_bins=10)[1]
    metrics: MultilabelMetrics = compute_multilabel(stats)
    valid = targets.numpy() != IGNORE
    x, t = logits.numpy()[valid], targets.numpy()[valid]
    p = torch.sigmoid(logits).numpy()[valid].astype(np.float64)
    expected = sigmoid_focal_loss64(x, t, 0.4, 1.5).mean()
    assert metrics.mean_focal_loss.item() == pytest.approx(expected, rel=1e-6)
    expected = sigmoid_focal_loss64(x, t, -1.0, 0.0).mean()
    assert metrics.mean_binary_cross_entropy.item() == pytest.approx(expected, rel=1e-6)
    assert metrics.brier_score.item() == pytest.approx(brier_score_loss(t, p), rel=1e-6)
    ece = expected_calibration_error64(p, t, 10)
    assert metrics.expected_calibration_error.item() == pytest.approx(ece, abs=1e-9)
