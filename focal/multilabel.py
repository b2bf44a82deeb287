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
from torch import Tensor

from focal_eval.focal._fields import names_function, sum_function
from focal_eval.focal._validation import (
    check_finite,
    check_gamma,
    check_num_bins,
    check_score_bins,
    check_sigmoid_alpha,
    check_threshold,
)
from focal_eval.focal.functional import upcast_half
from focal_eval.focal.ranking import DEFAULT_SCORE_BINS
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
_add: Callable[[MultilabelStatistics, MultilabelStatistics], MultilabelStatistics] = sum_function(
    "_add", MultilabelStatistics, globals()
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
              \text{FL} = e^{-\gamma (s x + \text{BCE})}\, \text{BCE}, \quad s = 2t - 1

    using :math:`\operatorname{softplus}(z) = z + \operatorname{softplus}(-z)` (one softplus
    an element, not two), :func:`softplus` (five times faster than onnxruntime's), and
    :math:`s` as a product, not a select (onnxruntime's ``Where`` costs as much as ten
    multiplications).

    Args:
        logits: float logits.
        positive: boolean targets of the same shape.
        gamma: 0-d focusing parameter.

    Returns:
        ``(binary_cross_entropy, focal_loss)``, each of the logits' shape.
    """
    signed = logits * (2.0 * positive.to(logits.dtype) - 1.0)
    cross_entropy = softplus(-signed)
    modulating = torch.exp(-gamma * (signed + cross_entropy))
    return cross_entropy, modulating * cross_entropy


def softplus(z: Tensor) -> Tensor:
    r""":math:`\log(1 + e^z) = \max(z, 0) + \operatorname{log1p}(e^{-|z|})`, to a few ulps.

    ``log1p(e)`` is Kahan's :math:`\log(u)\, e / (u - 1)` with :math:`u = 1 + e` (exact
    where :math:`u = 1`: then it is :math:`e`), accurate for tiny results where ``log(1 + e)``
    is not; every step an elementwise product or sum (no select), exported as such.

    Example:
        >>> softplus(torch.tensor([-30.0, 0.0, 30.0])).tolist()  # doctest: +ELLIPSIS
        [9.357...e-14, 0.693..., 30.0]
    """
    e = torch.exp(-torch.abs(z))
    u = 1.0 + e
    step = u - 1.0
    exact = (step == 0.0).to(z.dtype)
    return torch.relu(z) + torch.log(u) * (e / (step + exact)) + exact * e


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
    """The unchecked multi-label step (graph inputs as tensors; exported as-is).

    Every count per label comes from one scatter: each decision adds 1 to the cell (label,
    target, prediction, score bin) of an ``(L, 2, 2, H + 1)`` table (bin ``H`` holds the
    scores equal to 1 and is folded into ``H - 1``); the histograms and TP / FP / FN / TN
    are its sums. Calibration counts take a second scatter, their probability sums a third.
    Masks multiply rather than select: the whole step runs on ``N x L`` elements, and
    onnxruntime's ``Where`` is slow.
    """
    x = upcast_half(logits)
    num_labels = x.shape[1]
    valid = targets != ignore_index
    positive = (targets == 1) & valid
    decided = positive | ((targets == 0) & valid)
    valid_x = valid.to(x.dtype)
    positive_x = positive.to(x.dtype)

    cross_entropy, focal = sigmoid_focal_terms(x, positive, gamma.to(x.dtype))
    alpha_x = alpha.to(x.dtype)
    weighted = alpha_x >= 0.0
    alpha_positive = torch.where(weighted, alpha_x, 1.0)  # 0-d
    alpha_negative = torch.where(weighted, 1.0 - alpha_x, 1.0)
    focal = valid_x * (alpha_negative + positive_x * (alpha_positive - alpha_negative)) * focal
    cross_entropy = valid_x * cross_entropy
    probability = torch.sigmoid(x)
    predicted = probability >= threshold.to(x.dtype)

    positive_int = positive.to(torch.int32)
    predicted_int = predicted.to(torch.int32)
    hits = positive_int * predicted_int
    wrong = (positive_int - predicted_int).abs() * decided.to(torch.int32)
    label_errors = wrong.sum(1).long()
    has_labels = valid.to(torch.int32).sum(1) > 0
    tp_i = hits.sum(1).to(torch.float64)
    f1_denominator = 2.0 * tp_i + label_errors.to(torch.float64)
    sample_f1 = torch.where(
        f1_denominator > 0, 2.0 * tp_i / torch.where(f1_denominator > 0, f1_denominator, 1.0), 0.0
    )

    brier = valid_x * (probability - positive_x) ** 2
    # cell (label, target, prediction, bin); p = 1 lands in bin H, folded below
    width = score_bins + 1
    score = (probability.to(torch.float64) * score_bins).long()
    label_cells = torch.arange(num_labels, device=x.device) * (4 * width)  # 2 targets x 2
    outcome = (2 * positive_int + predicted_int).long()
    cells = (label_cells + width * outcome + score).reshape(-1)
    table = torch.zeros(num_labels * 4 * width, dtype=torch.long, device=x.device)
    table = table.scatter_add(0, cells, decided.reshape(-1).long()).reshape(num_labels, 2, 2, width)
    table = torch.cat([table[..., : score_bins - 1], table[..., score_bins - 1 :].sum(3, True)], 3)
    by_target = table.sum(2)  # (L, target, H)
    outcomes = table.sum(3)  # (L, target, prediction)

    bins = calibration_bin(probability.reshape(-1), num_bins)
    calibration = torch.zeros(2 * num_bins, dtype=torch.long, device=x.device)
    calibration = calibration.scatter_add(
        0, 2 * bins + positive_int.reshape(-1).long(), valid.reshape(-1).long()
    ).reshape(num_bins, 2)
    probability_sum = torch.zeros(num_bins, dtype=torch.float64, device=x.device)

    statistics = MultilabelStatistics(
        true_positive=outcomes[:, 1, 1],
        false_positive=outcomes[:, 0, 1],
        false_negative=outcomes[:, 1, 0],
        true_negative=outcomes[:, 0, 0],
        focal_loss_sum=focal.double().sum(0),
        binary_cross_entropy_sum=cross_entropy.double().sum(0),
        brier_sum=brier.double().sum(0),
        bin_count=calibration.sum(1),
        bin_probability_sum=probability_sum.scatter_add(
            0, bins, (valid_x * probability).reshape(-1).double()
        ),
        bin_positive=calibration[:, 1],
        samples=has_labels.long().sum(),
        exact_matches=(has_labels & (label_errors == 0)).long().sum(),
        sample_f1_sum=torch.where(has_labels, sample_f1, 0.0).sum(),
        positive_histogram=by_target[:, 1],
        negative_histogram=by_target[:, 0],
    )
    per_sample = MultilabelPerSample(
        focal_loss=focal.sum(1),
        binary_cross_entropy=cross_entropy.sum(1),
        label_errors=label_errors,
    )
    return per_sample, statistics
