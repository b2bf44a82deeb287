r"""The evaluation step: one batch to per-sample values and additive statistics.

Statistics are sums, so batches, windows and replicas combine with :func:`merge` (elementwise
``+``) and ``compute(merge(update(a), update(b))) == compute(update(a ++ b))``. Everything is
scatter-based (``scatter_add``, which exports faithfully to ONNX ``ScatterElements`` with
``reduction="add"``) with masks instead of boolean indexing, so the same code runs eagerly,
under TorchScript, and as an exported graph with dynamic N and C.

Per-class sums are indexed by the *true* class and accumulated in float64; the calibration
bins are equal-width over the confidence (max probability): bin :math:`b` holds confidences in
:math:`(b/B, (b+1)/B]`.
"""

from typing import Callable, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from focal_eval.focal._fields import names_function, sum_function
from focal_eval.focal._validation import (
    check_alpha,
    check_finite,
    check_gamma,
    check_logits,
    check_num_bins,
    check_target_shape,
    check_target_values,
)
from focal_eval.focal.functional import (
    softmax_focal_terms,
    softmax_parts,
    upcast_half,
)

DEFAULT_NUM_BINS = 15


class PerSample(NamedTuple):
    """Per-row values of one batch, each ``(N,)``. Ignored rows get 0 loss and ``p_true``."""

    focal_loss: Tensor  # float32: alpha_y (1 - p_y)^gamma (-log p_y)
    cross_entropy: Tensor  # float32: -log p_y
    p_true: Tensor  # float32: p_y, the probability of the true class
    prediction: Tensor  # int64: argmax of the logits (first index on ties)
    confidence: Tensor  # float32: the predicted class's probability


class Statistics(NamedTuple):
    """Additive sufficient statistics of one or many batches (C classes, B bins).

    Every field is summed by :func:`merge`. A new statistic is a field here, computed in
    :func:`_update`: :func:`merge`, :func:`empty_statistics`, :func:`check_statistics`, the
    metrics graph's inputs and the export manifests follow from ``_fields``.
    """

    confusion_matrix: Tensor  # int64 (C, C): rows true class, columns predicted class
    focal_loss_sum: Tensor  # float64 (C,): sum of focal loss by true class
    cross_entropy_sum: Tensor  # float64 (C,): sum of cross entropy by true class
    alpha_sum: Tensor  # float64 (C,): sum of alpha_y by true class
    brier_sum: Tensor  # float64 (C,): sum of sum_k (p_k - [k = y])^2 by true class
    bin_count: Tensor  # int64 (B,): samples per confidence bin
    bin_confidence_sum: Tensor  # float64 (B,): sum of confidence per bin
    bin_correct: Tensor  # int64 (B,): correct predictions per bin


# Written from Statistics._fields (see focal._fields): TorchScript cannot build a NamedTuple
# in a loop over its fields, nor read `_fields`.
_add: Callable[[Statistics, Statistics], Statistics] = sum_function("_add", Statistics, globals())
_statistics_fields = names_function("_statistics_fields", Statistics._fields, globals())


def update(
    logits: Tensor,
    labels: Tensor,
    alpha: Optional[Tensor] = None,
    gamma: float = 2.0,
    ignore_index: int = -100,
    num_bins: int = DEFAULT_NUM_BINS,
) -> Tuple[PerSample, Statistics]:
    """Score one batch: per-sample values and its additive statistics.

    Args:
        logits: ``(N, C)`` float logits, finite, ``C >= 2``.
        labels: ``(N,)`` integer labels in ``[0, C)`` or ``ignore_index``.
        alpha: ``(C,)`` non-negative class weights, or None for all ones.
        gamma: focusing parameter, ``>= 0``.
        ignore_index: label value of rows to skip (they count in no statistic).
        num_bins: number of equal-width calibration bins.

    Returns:
        ``(PerSample, Statistics)``.

    Raises:
        ValueError: an argument or tensor is out of its domain; the message names it.

    Example:
        >>> logits = torch.tensor([[2.0, 0.1], [0.3, 1.0], [1.0, 0.0]])
        >>> per_sample, stats = update(logits, torch.tensor([0, 0, -100]))
        >>> stats.confusion_matrix.tolist()
        [[1, 1], [0, 0]]
        >>> per_sample.prediction.tolist()
        [0, 1, 0]
    """
    check_update_arguments(gamma, num_bins)
    check_update_tensors(logits, labels, alpha, ignore_index)
    if alpha is None:
        alpha = torch.ones(logits.shape[1], device=logits.device)
    return _update(
        logits,
        labels.long(),
        alpha,
        torch.tensor(gamma, dtype=torch.float64),
        torch.tensor(ignore_index),
        num_bins,
    )


def check_update_arguments(gamma: float, num_bins: int) -> None:
    """Argument checks of :func:`update` (Python values only)."""
    check_gamma(gamma)
    check_num_bins(num_bins)


def check_update_tensors(
    logits: Tensor, labels: Tensor, alpha: Optional[Tensor], ignore_index: int
) -> None:
    """Tensor checks of :func:`update`: shapes, dtypes, label range, finite logits."""
    check_logits(logits)
    if logits.dim() != 2:
        raise ValueError(f"Expected `logits` to have shape (N, C), but got {list(logits.shape)}")
    check_target_shape(logits, labels)
    check_alpha(alpha, logits.shape[1], allow_scalar=False)
    check_target_values(labels, logits.shape[1], ignore_index)
    check_finite("logits", logits)


def merge(a: Statistics, b: Statistics) -> Statistics:
    """Statistics of the union of two sets of batches (elementwise sum, field by field).

    Raises:
        ValueError: a field's shape differs between the two (they were computed for different
            numbers of classes or bins); the message names it.
    """
    names = _statistics_fields()
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x.shape != y.shape:
            raise ValueError(
                f"Expected statistics of the same shape, but got `{names[i]}` of shape"
                f" {list(x.shape)} and {list(y.shape)}"
            )
    return _add(a, b)


def empty_statistics(
    num_classes: int, num_bins: int = DEFAULT_NUM_BINS, device: Optional[torch.device] = None
) -> Statistics:
    """All-zero statistics, the identity of :func:`merge`: those of a batch of no rows.

    Example:
        >>> empty = empty_statistics(3)
        >>> empty.confusion_matrix.shape, empty.bin_count.shape, empty.brier_sum.dtype
        (torch.Size([3, 3]), torch.Size([15]), torch.float64)
    """
    # no rows: gamma and ignore_index change nothing; every field gets its dtype and shape
    return _update(
        torch.zeros(0, num_classes, device=device),
        torch.zeros(0, dtype=torch.long, device=device),
        torch.ones(num_classes, device=device),
        torch.tensor(0.0, dtype=torch.float64),
        torch.tensor(-100),
        num_bins,
    )[1]


def check_statistics(s: Statistics) -> None:
    """Every field must have the shape it has in statistics of C classes and B bins.

    C is read from ``confusion_matrix`` (C, C) and B from ``bin_count`` (B,).

    Raises:
        ValueError: a field's shape does not fit; the message names it.
    """
    cm = s.confusion_matrix
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(
            f"Expected `confusion_matrix` to have shape (C, C), but got {list(cm.shape)}"
        )
    if s.bin_count.dim() != 1:
        raise ValueError(
            f"Expected `bin_count` to have shape (B,), but got {list(s.bin_count.shape)}"
        )
    names = _statistics_fields()
    expected = empty_statistics(cm.shape[0], s.bin_count.shape[0], cm.device)
    for i, (got, want) in enumerate(zip(s, expected, strict=True)):
        if got.shape != want.shape:
            raise ValueError(
                f"Expected `{names[i]}` to have shape {list(want.shape)}, but got {list(got.shape)}"
            )


def _update(
    logits: Tensor,
    labels: Tensor,
    alpha: Tensor,
    gamma: Tensor,
    ignore_index: Tensor,
    num_bins: int,
) -> Tuple[PerSample, Statistics]:
    """The unchecked evaluation step (graph inputs as tensors; exported as-is)."""
    x = upcast_half(logits)
    num_classes = x.shape[1]
    valid = labels != ignore_index
    safe_labels = torch.where(valid, labels, torch.zeros_like(labels))
    zero = torch.zeros_like(labels, dtype=x.dtype)

    # one max (and its first index), one exp of the other classes, then sums: no log-softmax,
    # no (N, C) probabilities; 1 - p_y is summed (no cancellation where p_y nears 1)
    others, rest, total, shifted_true, prediction = softmax_parts(x, safe_labels)
    cross_entropy, focal = softmax_focal_terms(shifted_true, total, rest, gamma)
    alpha_true = alpha.to(x.dtype).gather(0, safe_labels)
    focal = torch.where(valid, alpha_true * focal, zero)
    cross_entropy = torch.where(valid, cross_entropy, zero)
    p_true = torch.where(valid, torch.exp(-cross_entropy), zero)
    confidence = 1.0 / total  # the largest probability: exp(0) / s
    # sum_k (p_k - [k = y])^2 = sum_{k != y} p_k^2 + (1 - p_y)^2: each term formed without
    # cancellation (sum p^2 - 2 p_y + 1 loses every digit near p_y = 1); the squared norm is
    # one pass in eager (no (N, C) temporary), and export/lowering.py gives onnxruntime its sum
    brier = torch.linalg.vector_norm(others, 2.0, dim=1).square() / (total * total) + rest * rest

    valid_count = valid.long()
    correct = ((prediction == labels) & valid).long()
    per_class = torch.zeros(num_classes, dtype=torch.float64, device=x.device)
    cells = torch.zeros(num_classes * num_classes, dtype=torch.long, device=x.device)
    confusion = cells.scatter_add(0, safe_labels * num_classes + prediction, valid_count)
    bins = calibration_bin(confidence, num_bins)
    per_bin = torch.zeros(num_bins, dtype=torch.float64, device=x.device)

    statistics = Statistics(
        confusion_matrix=confusion.reshape(num_classes, num_classes),
        focal_loss_sum=per_class.scatter_add(0, safe_labels, focal.double()),
        cross_entropy_sum=per_class.scatter_add(0, safe_labels, cross_entropy.double()),
        alpha_sum=per_class.scatter_add(
            0, safe_labels, torch.where(valid, alpha_true, zero).double()
        ),
        brier_sum=per_class.scatter_add(0, safe_labels, torch.where(valid, brier, zero).double()),
        bin_count=per_bin.long().scatter_add(0, bins, valid_count),
        bin_confidence_sum=per_bin.scatter_add(
            0, bins, torch.where(valid, confidence, zero).double()
        ),
        bin_correct=per_bin.long().scatter_add(0, bins, correct),
    )
    per_sample = PerSample(
        focal_loss=focal,
        cross_entropy=cross_entropy,
        p_true=p_true,
        prediction=prediction,
        confidence=confidence,
    )
    return per_sample, statistics


def calibration_bin(confidence: Tensor, num_bins: int) -> Tensor:
    """Index ``b`` of the bin :math:`(b/B, (b+1)/B]` holding each confidence."""
    scaled = torch.ceil(confidence * num_bins) - 1.0
    return scaled.clamp(0.0, float(num_bins - 1)).long()
