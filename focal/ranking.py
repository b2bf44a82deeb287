r"""Ranking metrics (AUROC, average precision) from binned score histograms, which add up.

A score :math:`p \in [0, 1]` falls in bin :math:`h = \min(\lfloor p H \rfloor, H - 1)` of
:math:`H` equal-width bins, :math:`[h/H, (h+1)/H)` (the last one closed). Counting positives
:math:`P_h` and negatives :math:`N_h` per bin (per label, or per class one-vs-rest) gives
statistics that merge by ``+`` across batches, windows and replicas. From them:

- AUROC, with the scores rounded down to their bin's lower edge and ties counted half (the
  Mann-Whitney form scikit-learn's ``roc_auc_score`` computes):

  .. math:: \text{AUROC} = \frac{\sum_h P_h \left(\sum_{h' < h} N_{h'} + \tfrac12 N_h\right)}
            {\sum_h P_h \sum_h N_h}

- average precision, scikit-learn's ``average_precision_score`` on the same rounded scores:
  one threshold per bin, a sample predicted positive when its bin is at or above the
  threshold's, :math:`\text{AP} = \sum_h \frac{P_h}{\sum P} \cdot
  \frac{\sum_{h' \ge h} P_{h'}}{\sum_{h' \ge h} (P_{h'} + N_{h'})}`.

Both are exact for the rounded scores; against the unrounded ones the difference comes only
from pairs within one bin. AUROC is undefined (NaN) without positives or without negatives; AP
is NaN without positives (and 1 without negatives, every threshold's precision being 1).
Macro averages skip the undefined rows; micro averages pool every row's bins.
"""

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from focal_eval.focal._validation import (
    check_finite,
    check_logits,
    check_score_bins,
    check_target_shape,
    check_target_values,
)
from focal_eval.focal.functional import upcast_half

DEFAULT_SCORE_BINS = 100


class RankingStatistics(NamedTuple):
    """Score histograms of each class one-vs-rest (multi-class ranking), ``(C, H)`` int64."""

    positive_histogram: Tensor  # samples of the class, by bin of their probability of it
    negative_histogram: Tensor  # samples of other classes, by bin of their probability of it


class Ranking(NamedTuple):
    """AUROC and average precision per row (label or class) and averaged, float64."""

    auroc: Tensor  # (K,)
    average_precision: Tensor  # (K,)
    macro_auroc: Tensor  # ()
    macro_average_precision: Tensor  # ()
    micro_auroc: Tensor  # ()
    micro_average_precision: Tensor  # ()


def score_bin(scores: Tensor, score_bins: int) -> Tensor:
    """Index of the bin :math:`[h/H, (h+1)/H)` of each score in ``[0, 1]`` (1 in the last)."""
    # in float64, where p * H is exact for a float32 p: in float32 it may round up onto an edge;
    # truncation is the floor for p >= 0
    scaled = scores.to(torch.float64) * score_bins
    return scaled.long().clamp(max=score_bins - 1)


def ranking(positive_histogram: Tensor, negative_histogram: Tensor) -> Ranking:
    """AUROC and AP of each row of ``(K, H)`` histograms, and their macro and micro averages.

    Example:
        >>> positives = torch.tensor([[0, 1, 2]])  # bins 0, 1, 2 of H = 3
        >>> negatives = torch.tensor([[2, 1, 0]])
        >>> result = ranking(positives, negatives)
        >>> round(result.auroc.item(), 4), round(result.average_precision.item(), 4)
        (0.9444, 0.9167)
    """
    positives = positive_histogram.to(torch.float64)
    negatives = negative_histogram.to(torch.float64)
    auroc = _auroc(positives, negatives)
    average_precision = _average_precision(positives, negatives)
    pooled_positives = positives.sum(0, keepdim=True)
    pooled_negatives = negatives.sum(0, keepdim=True)
    return Ranking(
        auroc=auroc,
        average_precision=average_precision,
        macro_auroc=_nan_mean(auroc),
        macro_average_precision=_nan_mean(average_precision),
        micro_auroc=_auroc(pooled_positives, pooled_negatives).squeeze(0),
        micro_average_precision=_average_precision(pooled_positives, pooled_negatives).squeeze(0),
    )


def _auroc(positives: Tensor, negatives: Tensor) -> Tensor:
    """Mann-Whitney AUROC per row; NaN where a row has no positives or no negatives."""
    below = torch.cumsum(negatives, dim=1) - negatives  # negatives in lower bins
    wins = (positives * (below + 0.5 * negatives)).sum(1)
    pairs = positives.sum(1) * negatives.sum(1)
    return torch.where(pairs > 0, wins / torch.where(pairs > 0, pairs, 1.0), float("nan"))


def _average_precision(positives: Tensor, negatives: Tensor) -> Tensor:
    """Step-wise AP per row (scikit-learn's), one threshold per bin; NaN without positives."""
    total = positives.sum(1, keepdim=True)
    # samples at or above each bin: totals less what lies below it
    true_above = total - torch.cumsum(positives, dim=1) + positives
    everything = positives + negatives
    all_above = everything.sum(1, keepdim=True) - torch.cumsum(everything, dim=1) + everything
    precision = true_above / torch.where(all_above > 0, all_above, 1.0)
    summed = (positives * precision).sum(1)
    total = total.squeeze(1)
    return torch.where(total > 0, summed / torch.where(total > 0, total, 1.0), float("nan"))


def _nan_mean(values: Tensor) -> Tensor:
    """Mean over the defined (non-NaN) entries; NaN when none is."""
    defined = ~torch.isnan(values)
    count = defined.sum().to(values.dtype)
    return torch.where(defined, values, 0.0).sum() / count


def update_ranking(
    logits: Tensor, labels: Tensor, ignore_index: int = -100, score_bins: int = DEFAULT_SCORE_BINS
) -> RankingStatistics:
    r"""One-vs-rest score histograms of a multi-class batch: each class's softmax probability.

    Every valid row adds one count to each class's histograms (a positive for its label, a
    negative for the others), so this costs a softmax and a scatter over :math:`N \times C`
    on top of the evaluation step.

    Args:
        logits: ``(N, C)`` float logits, finite, ``C >= 2``.
        labels: ``(N,)`` integer labels in ``[0, C)`` or ``ignore_index``.
        ignore_index: label value of rows to skip.
        score_bins: equal-width bins of the histograms.

    Raises:
        ValueError: an argument or tensor is out of its domain; the message names it.

    Example:
        >>> stats = update_ranking(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0]),
        ...                        score_bins=4)
        >>> stats.positive_histogram.tolist(), stats.negative_histogram.tolist()
        ([[1, 0, 0, 1], [0, 0, 0, 0]], [[0, 0, 0, 0], [1, 0, 0, 1]])
    """
    check_score_bins(score_bins)
    check_logits(logits)
    if logits.dim() != 2:
        raise ValueError(f"Expected `logits` to have shape (N, C), but got {list(logits.shape)}")
    check_target_shape(logits, labels)
    check_target_values(labels, logits.shape[1], ignore_index)
    check_finite("logits", logits)
    return _update_ranking(logits, labels.long(), torch.tensor(ignore_index), score_bins)


def merge_ranking(a: RankingStatistics, b: RankingStatistics) -> RankingStatistics:
    """Histograms of the union of two sets of batches.

    Raises:
        ValueError: a histogram's shape differs (other class or bin counts); the message names
            it.
    """
    for name, x, y in (
        ("positive_histogram", a.positive_histogram, b.positive_histogram),
        ("negative_histogram", a.negative_histogram, b.negative_histogram),
    ):
        if x.shape != y.shape:
            raise ValueError(
                f"Expected ranking statistics of the same shape, but got `{name}` of shape"
                f" {list(x.shape)} and {list(y.shape)}"
            )
    return RankingStatistics(
        a.positive_histogram + b.positive_histogram, a.negative_histogram + b.negative_histogram
    )


def _update_ranking(
    logits: Tensor, labels: Tensor, ignore_index: Tensor, score_bins: int
) -> RankingStatistics:
    """The unchecked one-vs-rest histograms (exported as-is).

    One scatter over ``N x C`` counts every valid row in each class's histogram; the
    positives, one a row, take a scatter over ``N``; the negatives are the difference.
    """
    x = upcast_half(logits)
    n, num_classes = x.shape[0], x.shape[1]
    valid = labels != ignore_index
    safe_labels = torch.where(valid, labels, 0)
    probability = F.softmax(x, dim=1)
    offsets = torch.arange(num_classes, device=x.device) * score_bins
    every = (offsets.unsqueeze(0) + score_bin(probability, score_bins)).reshape(-1)
    counted = valid.long().unsqueeze(1).expand(n, num_classes).reshape(-1)
    histogram = torch.zeros(num_classes * score_bins, dtype=torch.long, device=x.device)
    everything = histogram.scatter_add(0, every, counted)
    true_probability = probability.gather(1, safe_labels.unsqueeze(1)).squeeze(1)
    own = safe_labels * score_bins + score_bin(true_probability, score_bins)
    positives = histogram.scatter_add(0, own, valid.long())
    return RankingStatistics(
        positive_histogram=positives.reshape(num_classes, score_bins),
        negative_histogram=(everything - positives).reshape(num_classes, score_bins),
    )


def empty_ranking_statistics(
    num_classes: int, score_bins: int = DEFAULT_SCORE_BINS, device: Optional[torch.device] = None
) -> RankingStatistics:
    """All-zero histograms, the identity of :func:`merge_ranking`."""
    zeros = torch.zeros(num_classes, score_bins, dtype=torch.long, device=device)
    return RankingStatistics(zeros, zeros.clone())
