r"""The multi-label (and binary) evaluation step: sigmoid focal loss and additive statistics.

Each of the :math:`L` labels of a sample is its own binary decision: logits ``(N, L)``, targets
``(N, L)`` in :math:`\{0, 1\}`, or ``ignore_index`` for an element that counts nowhere. A binary
model is the case :math:`L = 1`. Per element, with :math:`p = \sigma(x)` and
:math:`s = 2t - 1`:

.. math::

    \text{BCE} = \operatorname{softplus}(-s x), \qquad
    \text{FL} = \alpha_t\, e^{-\gamma \operatorname{softplus}(s x)}\, \text{BCE}, \qquad
    \alpha_t = \alpha t + (1 - \alpha)(1 - t)

(torchvision's ``sigmoid_focal_loss``: :math:`\log(1 - p_t) = -\operatorname{softplus}(s x)`;
:math:`\alpha < 0` turns the weighting off), finite for any finite logit in every runtime.

A label is predicted positive when :math:`p \ge` ``threshold`` (the convention of the ROC and
precision-recall curves). Statistics are sums, merged by :func:`merge_multilabel` (``+``):
counts per label, loss sums, calibration bins over every label decision (equal-width over
:math:`p`, as the multi-class bins), per-sample aggregates, and the score histograms of
:mod:`focal_eval.focal.ranking` for positives and negatives of each label.
"""

from typing import Callable, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from focal_eval.focal._fields import define, keyword_arguments, names_function
from focal_eval.focal._validation import (
    check_finite,
    check_gamma,
    check_num_bins,
    check_score_bins,
    check_sigmoid_alpha,
    check_threshold,
)
from focal_eval.focal.functional import upcast_half
from focal_eval.focal.ranking import DEFAULT_SCORE_BINS, score_bin
from focal_eval.focal.statistics import DEFAULT_NUM_BINS, calibration_bin

DEFAULT_ALPHA = 0.25  # torchvision's, the paper's
DEFAULT_THRESHOLD = 0.5


class MultilabelPerSample(NamedTuple):
    """Per-sample values, each ``(N,)``, summed over the sample's labels that are not ignored."""

    focal_loss: Tensor  # float32: sum of the sigmoid focal loss over the labels
    binary_cross_entropy: Tensor  # float32: sum of the binary cross entropy over the labels
    label_errors: Tensor  # int64: labels decided wrongly at the threshold


class MultilabelStatistics(NamedTuple):
    """Additive statistics of one or many batches (L labels, B calibration bins, H score bins).

    Every field is summed by :func:`merge_multilabel`; a new statistic is a field here,
    computed in :func:`_update_multilabel`.
    """

    true_positive: Tensor  # int64 (L,)
    false_positive: Tensor  # int64 (L,)
    false_negative: Tensor  # int64 (L,)
    true_negative: Tensor  # int64 (L,)
    focal_loss_sum: Tensor  # float64 (L,)
    binary_cross_entropy_sum: Tensor  # float64 (L,)
    brier_sum: Tensor  # float64 (L,): sum of (p - t)^2
    bin_count: Tensor  # int64 (B,): label decisions per calibration bin of p
    bin_probability_sum: Tensor  # float64 (B,): sum of p per bin
    bin_positive: Tensor  # int64 (B,): positive targets per bin
    samples: Tensor  # int64 (): samples with at least one label not ignored
    exact_matches: Tensor  # int64 (): those samples with every such label right
    sample_f1_sum: Tensor  # float64 (): sum over those samples of their F1 over labels
    positive_histogram: Tensor  # int64 (L, H): positives per score bin
    negative_histogram: Tensor  # int64 (L, H): negatives per score bin


# Written from MultilabelStatistics._fields (see focal._fields)
_add: Callable[[MultilabelStatistics, MultilabelStatistics], MultilabelStatistics] = define(
    "_add",
    f"""def _add(a: MultilabelStatistics, b: MultilabelStatistics) -> MultilabelStatistics:
    return MultilabelStatistics({keyword_arguments(MultilabelStatistics._fields, "a.{} + b.{}")})
""",
    globals(),
)
_statistics_fields = names_function("_statistics_fields", MultilabelStatistics._fields, globals())


def update_multilabel(
    logits: Tensor,
    targets: Tensor,
    alpha: float = DEFAULT_ALPHA,
    gamma: float = 2.0,
    threshold: float = DEFAULT_THRESHOLD,
    ignore_index: int = -100,
    num_bins: int = DEFAULT_NUM_BINS,
    score_bins: int = DEFAULT_SCORE_BINS,
) -> Tuple[MultilabelPerSample, MultilabelStatistics]:
    r"""Score one multi-label (or binary) batch: per-sample values and additive statistics.

    Args:
        logits: ``(N, L)`` float logits, finite, ``L >= 1``; ``(N,)`` for a binary model.
        targets: integer targets of the logits' shape, each 0, 1 or ``ignore_index``.
        alpha: weight of positives in ``[0, 1]`` (negatives ``1 - alpha``); ``< 0``: off.
        gamma: focusing parameter, ``>= 0``.
        threshold: a label is predicted positive when :math:`p \ge` threshold, in ``(0, 1)``.
        ignore_index: target value of elements to skip (they count in no statistic).
        num_bins: equal-width calibration bins.
        score_bins: equal-width score bins of the ranking histograms.

    Returns:
        ``(MultilabelPerSample, MultilabelStatistics)``.

    Raises:
        ValueError: an argument or tensor is out of its domain; the message names it.

    Example:
        >>> logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
        >>> per_sample, stats = update_multilabel(logits, torch.tensor([[1, 0], [0, -100]]))
        >>> stats.true_positive.tolist(), stats.false_positive.tolist()
        ([1, 0], [1, 0])
        >>> per_sample.label_errors.tolist()
        [0, 1]
    """
    check_multilabel_arguments(alpha, gamma, threshold, num_bins, score_bins)
    if logits.dim() == 1:  # a binary model's single logit per sample
        logits, targets = logits.unsqueeze(1), targets.unsqueeze(1)
    check_multilabel_tensors(logits, targets, ignore_index)
    return _update_multilabel(
        logits,
        targets.long(),
        torch.tensor(alpha, dtype=torch.float64),
        torch.tensor(gamma, dtype=torch.float64),
        torch.tensor(threshold, dtype=torch.float64),
        torch.tensor(ignore_index),
        num_bins,
        score_bins,
    )


def check_multilabel_arguments(
    alpha: float, gamma: float, threshold: float, num_bins: int, score_bins: int
) -> None:
    """Argument checks of :func:`update_multilabel` (Python values only)."""
    check_sigmoid_alpha(alpha)
    check_gamma(gamma)
    check_threshold(threshold)
    check_num_bins(num_bins)
    check_score_bins(score_bins)


def check_multilabel_tensors(logits: Tensor, targets: Tensor, ignore_index: int) -> None:
    """Tensor checks of :func:`update_multilabel`: shapes, dtypes, target values, finite logits."""
    if not logits.is_floating_point():
        raise ValueError(
            f"Expected `logits` to be a floating point tensor, but got dtype {logits.dtype}"
        )
    if logits.dim() != 2 or logits.shape[1] < 1:
        raise ValueError(
            f"Expected `logits` to have shape (N, L) with L >= 1, but got {list(logits.shape)}"
        )
    if targets.is_floating_point() or targets.dtype == torch.bool or targets.is_complex():
        raise ValueError(
            f"Expected `targets` to be an integer tensor, but got dtype {targets.dtype}"
        )
    if targets.shape != logits.shape:
        raise ValueError(
            f"Expected `targets` to have the shape of `logits` {list(logits.shape)}, but got"
            f" {list(targets.shape)}"
        )
    values = targets.long()  # in int64: a small dtype would wrap ignore_index
    bad = (values != ignore_index) & (values != 0) & (values != 1)
    if bool(bad.any()):
        raise ValueError(
            f"Expected `targets` values in {{0, 1}} or equal to ignore_index ({ignore_index}),"
            f" but found {int(values[bad][0].item())}"
        )
    check_finite("logits", logits)


def merge_multilabel(a: MultilabelStatistics, b: MultilabelStatistics) -> MultilabelStatistics:
    """Statistics of the union of two sets of batches (elementwise sum, field by field).

    Raises:
        ValueError: a field's shape differs between the two; the message names it.
    """
    names = _statistics_fields()
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x.shape != y.shape:
            raise ValueError(
                f"Expected statistics of the same shape, but got `{names[i]}` of shape"
                f" {list(x.shape)} and {list(y.shape)}"
            )
    return _add(a, b)


def empty_multilabel_statistics(
    num_labels: int,
    num_bins: int = DEFAULT_NUM_BINS,
    score_bins: int = DEFAULT_SCORE_BINS,
    device: Optional[torch.device] = None,
) -> MultilabelStatistics:
    """All-zero statistics, the identity of :func:`merge_multilabel`."""
    zero = torch.tensor(0.0, dtype=torch.float64)
    return _update_multilabel(
        torch.zeros(0, num_labels, device=device),
        torch.zeros(0, num_labels, dtype=torch.long, device=device),
        zero,
        zero,
        torch.tensor(0.5, dtype=torch.float64),
        torch.tensor(-100),
        num_bins,
        score_bins,
    )[1]


def check_multilabel_statistics(s: MultilabelStatistics) -> None:
    """Every field must have the shape it has for L labels, B bins and H score bins.

    L is read from ``true_positive``, B from ``bin_count``, H from ``positive_histogram``.

    Raises:
        ValueError: a field's shape does not fit; the message names it.
    """
    for name, tensor, dims in (
        ("true_positive", s.true_positive, 1),
        ("bin_count", s.bin_count, 1),
        ("positive_histogram", s.positive_histogram, 2),
    ):
        if tensor.dim() != dims:
            raise ValueError(
                f"Expected `{name}` to have {dims} dimension(s), but got {list(tensor.shape)}"
            )
    names = _statistics_fields()
    expected = empty_multilabel_statistics(
        s.true_positive.shape[0],
        s.bin_count.shape[0],
        s.positive_histogram.shape[1],
        s.true_positive.device,
    )
    for i, (got, want) in enumerate(zip(s, expected, strict=True)):
        if got.shape != want.shape:
            raise ValueError(
                f"Expected `{names[i]}` to have shape {list(want.shape)}, but got {list(got.shape)}"
            )


def sigmoid_focal_terms(logits: Tensor, positive: Tensor, gamma: Tensor) -> Tuple[Tensor, Tensor]:
    r"""Per-element binary cross entropy and unweighted focal loss at hard targets.

    .. math:: \text{BCE} = \operatorname{softplus}(-s x), \quad
              \text{FL} = e^{-\gamma \operatorname{softplus}(s x)}\, \text{BCE}, \quad s = 2t - 1

    Args:
        logits: float logits.
        positive: boolean targets of the same shape.
        gamma: 0-d focusing parameter.

    Returns:
        ``(binary_cross_entropy, focal_loss)``, each of the logits' shape.
    """
    signed = torch.where(positive, logits, -logits)
    cross_entropy = F.softplus(-signed)
    modulating = torch.exp(-gamma * F.softplus(signed))
    return cross_entropy, modulating * cross_entropy


def _update_multilabel(
    logits: Tensor,
    targets: Tensor,
    alpha: Tensor,
    gamma: Tensor,
    threshold: Tensor,
    ignore_index: Tensor,
    num_bins: int,
    score_bins: int,
) -> Tuple[MultilabelPerSample, MultilabelStatistics]:
    """The unchecked multi-label step (graph inputs as tensors; exported as-is)."""
    x = upcast_half(logits)
    num_labels = x.shape[1]
    valid = targets != ignore_index
    positive = (targets == 1) & valid
    negative = (targets == 0) & valid
    zero = torch.zeros_like(x)

    cross_entropy, focal = sigmoid_focal_terms(x, positive, gamma.to(x.dtype))
    alpha_x = alpha.to(x.dtype)
    weight = torch.where(positive, alpha_x, 1.0 - alpha_x)
    focal = torch.where(alpha_x >= 0.0, weight * focal, focal)
    focal = torch.where(valid, focal, zero)
    cross_entropy = torch.where(valid, cross_entropy, zero)
    probability = torch.sigmoid(x)
    predicted = probability >= threshold.to(x.dtype)

    true_positive = (predicted & positive).long()
    false_positive = (predicted & negative).long()
    false_negative = (~predicted & positive).long()
    errors = false_positive + false_negative
    label_errors = errors.sum(1)
    valid_labels = valid.long().sum(1)
    has_labels = valid_labels > 0
    tp_i = true_positive.sum(1).to(torch.float64)
    f1_denominator = 2.0 * tp_i + label_errors.to(torch.float64)
    sample_f1 = torch.where(
        f1_denominator > 0, 2.0 * tp_i / torch.where(f1_denominator > 0, f1_denominator, 1.0), 0.0
    )

    target_value = positive.to(x.dtype)
    brier = torch.where(valid, (probability - target_value) ** 2, zero)
    flat_valid = valid.reshape(-1)
    flat_probability = probability.reshape(-1)
    bins = calibration_bin(flat_probability, num_bins)
    per_bin = torch.zeros(num_bins, dtype=torch.float64, device=x.device)
    label_index = torch.arange(num_labels, device=x.device).expand(x.shape[0], num_labels)
    cells = label_index.reshape(-1) * score_bins + score_bin(flat_probability, score_bins)
    histogram = torch.zeros(num_labels * score_bins, dtype=torch.long, device=x.device)

    statistics = MultilabelStatistics(
        true_positive=true_positive.sum(0),
        false_positive=false_positive.sum(0),
        false_negative=false_negative.sum(0),
        true_negative=(~predicted & negative).long().sum(0),
        focal_loss_sum=focal.double().sum(0),
        binary_cross_entropy_sum=cross_entropy.double().sum(0),
        brier_sum=brier.double().sum(0),
        bin_count=per_bin.long().scatter_add(0, bins, flat_valid.long()),
        bin_probability_sum=per_bin.scatter_add(
            0, bins, torch.where(flat_valid, flat_probability, 0.0).double()
        ),
        bin_positive=per_bin.long().scatter_add(0, bins, positive.reshape(-1).long()),
        samples=has_labels.long().sum(),
        exact_matches=(has_labels & (label_errors == 0)).long().sum(),
        sample_f1_sum=torch.where(has_labels, sample_f1, 0.0).sum(),
        positive_histogram=histogram.scatter_add(0, cells, positive.reshape(-1).long()).reshape(
            num_labels, score_bins
        ),
        negative_histogram=histogram.scatter_add(0, cells, negative.reshape(-1).long()).reshape(
            num_labels, score_bins
        ),
    )
    per_sample = MultilabelPerSample(
        focal_loss=focal.sum(1),
        binary_cross_entropy=cross_entropy.sum(1),
        label_errors=label_errors,
    )
    return per_sample, statistics
