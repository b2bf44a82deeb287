r"""Multi-label (and binary) metrics from additive statistics: each formula written once.

Per label :math:`l`, with counts :math:`tp_l, fp_l, fn_l, tn_l` at the threshold:

- precision :math:`tp / (tp + fp)`, recall :math:`tp / (tp + fn)`, F1
  :math:`2 tp / (2 tp + fp + fn)`: 0 where the denominator is 0 (scikit-learn's
  ``zero_division=0``), so a label with no positives and none predicted has F1 0; support
  :math:`tp + fn`.
- micro F1 from the summed counts; macro F1 the mean over all L labels; weighted F1 weighted by
  support (scikit-learn's ``average="micro" / "macro" / "weighted"`` on the indicator matrix);
  samples F1 the mean over samples of each sample's F1 over its labels (``average="samples"``,
  0 for a sample with no positive and none predicted).
- subset accuracy: samples with every label right / samples; Hamming loss: wrong decisions /
  decisions (scikit-learn's ``accuracy_score`` and ``hamming_loss`` on indicator matrices).
- AUROC and average precision per label from the score histograms
  (:mod:`focal_eval.focal.ranking`): NaN for a label without positives (AUROC also without
  negatives); macro averages over the labels where defined, micro ones over the pooled bins.
- mean focal loss, mean binary cross entropy and Brier score :math:`(p - t)^2`: per decision
  (sums over labels and samples divided by the decisions); expected calibration error
  :math:`\sum_b |\text{positives}_b - \sum p| / \text{decisions}` over equal-width bins of
  :math:`p` (the binary form: the calibration of the probability of the positive class).

Elements equal to ``ignore_index`` are in no count; samples with no label left are not samples.
With no decisions every scalar metric is NaN.
"""

from typing import NamedTuple

import torch
from torch import Tensor

from focal_eval.focal.metrics import divide
from focal_eval.focal.multilabel import MultilabelStatistics, check_multilabel_statistics
from focal_eval.focal.ranking import ranking


class MultilabelMetrics(NamedTuple):
    """Metrics of multi-label statistics: scalars float64 0-d, per-label values ``(L,)``."""

    micro_f1: Tensor
    macro_f1: Tensor
    weighted_f1: Tensor
    samples_f1: Tensor
    subset_accuracy: Tensor
    hamming_loss: Tensor
    macro_auroc: Tensor
    micro_auroc: Tensor
    macro_average_precision: Tensor
    micro_average_precision: Tensor
    mean_focal_loss: Tensor
    mean_binary_cross_entropy: Tensor
    expected_calibration_error: Tensor
    brier_score: Tensor
    precision: Tensor
    recall: Tensor
    f1: Tensor
    auroc: Tensor
    average_precision: Tensor
    support: Tensor  # int64


def compute_multilabel(statistics: MultilabelStatistics) -> MultilabelMetrics:
    """Metrics from (merged) multi-label statistics; see the module docstring.

    Raises:
        ValueError: the statistics' shapes do not fit together.

    Example:
        >>> from focal_eval.focal.multilabel import update_multilabel
        >>> _, stats = update_multilabel(torch.tensor([[2.0, -1.0], [0.5, 3.0]]),
        ...                              torch.tensor([[1, 0], [0, 1]]))
        >>> metrics = compute_multilabel(stats)
        >>> metrics.f1.tolist(), metrics.hamming_loss.item()
        ([0.6666666666666666, 1.0], 0.25)
    """
    check_multilabel_statistics(statistics)
    return _compute_multilabel(statistics)


def _compute_multilabel(s: MultilabelStatistics) -> MultilabelMetrics:
    """The unchecked computation (exported as the stand-alone multi-label metrics graph)."""
    tp = s.true_positive.to(torch.float64)
    fp = s.false_positive.to(torch.float64)
    fn = s.false_negative.to(torch.float64)
    tn = s.true_negative.to(torch.float64)
    support = tp + fn
    decisions = (tp + fp + fn + tn).sum()
    samples = s.samples.to(torch.float64)
    f1 = divide(2.0 * tp, 2.0 * tp + fp + fn)
    scores = ranking(s.positive_histogram, s.negative_histogram)
    nan = torch.full_like(decisions, float("nan"))
    micro_f1 = divide(2.0 * tp.sum(), (2.0 * tp + fp + fn).sum())
    return MultilabelMetrics(
        micro_f1=torch.where(decisions > 0, micro_f1, nan),
        macro_f1=torch.where(decisions > 0, f1.mean(), nan),
        weighted_f1=torch.where(decisions > 0, divide((f1 * support).sum(), support.sum()), nan),
        samples_f1=s.sample_f1_sum / samples,
        subset_accuracy=s.exact_matches.to(torch.float64) / samples,
        hamming_loss=(fp + fn).sum() / decisions,
        macro_auroc=scores.macro_auroc,
        micro_auroc=scores.micro_auroc,
        macro_average_precision=scores.macro_average_precision,
        micro_average_precision=scores.micro_average_precision,
        mean_focal_loss=s.focal_loss_sum.sum() / decisions,
        mean_binary_cross_entropy=s.binary_cross_entropy_sum.sum() / decisions,
        expected_calibration_error=(s.bin_positive.to(torch.float64) - s.bin_probability_sum)
        .abs()
        .sum()
        / decisions,
        brier_score=s.brier_sum.sum() / decisions,
        precision=divide(tp, tp + fp),
        recall=divide(tp, support),
        f1=f1,
        auroc=scores.auroc,
        average_precision=scores.average_precision,
        support=s.true_positive + s.false_negative,
    )
