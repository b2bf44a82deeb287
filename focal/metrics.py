r"""Metrics from additive statistics: the one place each metric formula is written.

With :math:`M` the confusion matrix (rows true, columns predicted), :math:`s_c = \sum_j M_{cj}`
(support), :math:`\hat s_c = \sum_i M_{ic}` (predicted), :math:`t_c = M_{cc}`, :math:`n = \sum_c
s_c`:

- precision :math:`t_c / \hat s_c`, recall :math:`t_c / s_c`,
  F1 :math:`2 t_c / (s_c + \hat s_c)`: 0 where the denominator is 0 (scikit-learn's
  ``zero_division=0``).
- accuracy :math:`\sum_c t_c / n`; balanced accuracy: mean recall over classes with
  :math:`s_c > 0` (scikit-learn's ``balanced_accuracy_score``).
- macro F1: mean F1 over classes that occur as a label or a prediction (scikit-learn's
  ``f1_score(average="macro")`` without ``labels``); weighted F1 :math:`\sum_c s_c F1_c / n`.
- Matthews correlation (multi-class, Gorodkin 2004, as scikit-learn): 0 where undefined.
- mean focal loss / cross entropy / Brier: sums over samples divided by :math:`n`;
  alpha-weighted focal loss :math:`\sum_i FL_i / \sum_i \alpha_{y_i}` (the loss's
  ``reduction="mean"``); class-balanced focal loss: mean over classes with :math:`s_c > 0` of
  each class's mean focal loss.
- expected calibration error :math:`\sum_b |\text{correct}_b - \text{confidence}_b| / n` over
  equal-width confidence bins (Guo et al., 2017).
- Brier score :math:`\frac1n \sum_i \sum_k (p_{ik} - [k = y_i])^2`, the multi-class form; for
  C = 2 scikit-learn's ``brier_score_loss`` reports half of it.

With no valid samples (:math:`n = 0`, e.g. every label ignored) every scalar metric is NaN:
undefined, where scikit-learn raises on empty input. Per-class values are 0 there.
"""

from typing import NamedTuple

import torch
from torch import Tensor

from focal_eval.focal.statistics import Statistics, check_statistics


class Metrics(NamedTuple):
    """Metrics of a set of statistics: scalars are float64 0-d, per-class values ``(C,)``.

    A new metric is a field here, computed in :func:`_compute`: the evaluation and metrics
    graphs, their manifests and the parity checks follow from ``_fields``.
    """

    accuracy: Tensor
    balanced_accuracy: Tensor
    macro_f1: Tensor
    weighted_f1: Tensor
    matthews_corrcoef: Tensor
    mean_focal_loss: Tensor
    alpha_weighted_focal_loss: Tensor
    class_balanced_focal_loss: Tensor
    mean_cross_entropy: Tensor
    expected_calibration_error: Tensor
    brier_score: Tensor
    precision: Tensor
    recall: Tensor
    f1: Tensor
    support: Tensor  # int64


def compute(statistics: Statistics) -> Metrics:
    """Metrics from (merged) statistics; see the module docstring for each definition.

    Raises:
        ValueError: the statistics' shapes do not fit together.

    Example:
        >>> from focal.statistics import update
        >>> _, stats = update(torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]),
        ...                   torch.tensor([0, 0, 1]))
        >>> metrics = compute(stats)
        >>> round(metrics.accuracy.item(), 4), round(metrics.balanced_accuracy.item(), 4)
        (0.3333, 0.25)
    """
    check_statistics(statistics)
    return _compute(statistics)


def _compute(s: Statistics) -> Metrics:
    """The unchecked metric computation (exported as the stand-alone compute graph)."""
    cm = s.confusion_matrix.to(torch.float64)
    support = cm.sum(1)
    predicted = cm.sum(0)
    true_positive = torch.diagonal(cm)
    n = support.sum()
    has_support = support > 0

    precision = divide(true_positive, predicted)
    recall = divide(true_positive, support)
    f1 = divide(2.0 * true_positive, support + predicted)
    focal_total = s.focal_loss_sum.sum()
    return Metrics(
        accuracy=true_positive.sum() / n,
        balanced_accuracy=_mean_where(recall, has_support),
        macro_f1=_mean_where(f1, (support + predicted) > 0),
        weighted_f1=(f1 * support).sum() / n,
        matthews_corrcoef=_matthews(true_positive.sum(), n, support, predicted),
        mean_focal_loss=focal_total / n,
        alpha_weighted_focal_loss=focal_total / s.alpha_sum.sum(),
        class_balanced_focal_loss=_mean_where(divide(s.focal_loss_sum, support), has_support),
        mean_cross_entropy=s.cross_entropy_sum.sum() / n,
        expected_calibration_error=(s.bin_correct.to(torch.float64) - s.bin_confidence_sum)
        .abs()
        .sum()
        / n,
        brier_score=s.brier_sum.sum() / n,
        precision=precision,
        recall=recall,
        f1=f1,
        support=s.confusion_matrix.sum(1),
    )


def divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, 0 where the denominator is 0."""
    positive = denominator > 0
    safe = torch.where(positive, denominator, torch.ones_like(denominator))
    return torch.where(positive, numerator / safe, torch.zeros_like(numerator))


def _mean_where(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` holds; NaN for an empty mask."""
    return torch.where(mask, values, torch.zeros_like(values)).sum() / mask.sum().to(values.dtype)


def _matthews(correct: Tensor, n: Tensor, support: Tensor, predicted: Tensor) -> Tensor:
    r"""Multi-class Matthews correlation from class totals.

    .. math:: \frac{c n - \sum s \hat s}{\sqrt{(n^2 - \sum \hat s^2)(n^2 - \sum s^2)}}

    with :math:`c` correct, :math:`n` samples, :math:`s` support, :math:`\hat s` predicted.
    """
    covariance = correct * n - (support * predicted).sum()
    variance_product = (n * n - (predicted * predicted).sum()) * (n * n - (support * support).sum())
    defined = variance_product > 0
    safe = torch.where(defined, variance_product, torch.ones_like(variance_product))
    mcc = torch.where(defined, covariance / torch.sqrt(safe), torch.zeros_like(covariance))
    return torch.where(n > 0, mcc, torch.full_like(mcc, float("nan")))
