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

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from focal._validation import (
    check_alpha,
    check_finite,
    check_gamma,
    check_logits,
    check_num_bins,
    check_target_shape,
    check_target_values,
)
from focal.functional import softmax_focal_terms, upcast_half

DEFAULT_NUM_BINS = 15


class PerSample(NamedTuple):
    """Per-row values of one batch, each ``(N,)``. Ignored rows get 0 loss and ``p_true``."""

    focal_loss: Tensor  # float32: alpha_y (1 - p_y)^gamma (-log p_y)
    cross_entropy: Tensor  # float32: -log p_y
    p_true: Tensor  # float32: p_y, the probability of the true class
    prediction: Tensor  # int64: argmax of the logits (first index on ties)
    confidence: Tensor  # float32: the predicted class's probability


class Statistics(NamedTuple):
    """Additive sufficient statistics of one or many batches (C classes, B bins)."""

    confusion_matrix: Tensor  # int64 (C, C): rows true class, columns predicted class
    focal_loss_sum: Tensor  # float64 (C,): sum of focal loss by true class
    cross_entropy_sum: Tensor  # float64 (C,): sum of cross entropy by true class
    alpha_sum: Tensor  # float64 (C,): sum of alpha_y by true class
    brier_sum: Tensor  # float64 (C,): sum of sum_k (p_k - [k = y])^2 by true class
    bin_count: Tensor  # int64 (B,): samples per confidence bin
    bin_confidence_sum: Tensor  # float64 (B,): sum of confidence per bin
    bin_correct: Tensor  # int64 (B,): correct predictions per bin


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
    """Statistics of the union of two sets of batches (elementwise sum).

    Raises:
        ValueError: the two were computed for different numbers of classes or bins.
    """
    if (
        a.confusion_matrix.shape != b.confusion_matrix.shape
        or a.bin_count.shape != b.bin_count.shape
    ):
        raise ValueError(
            f"Expected statistics of the same shape, but got {list(a.confusion_matrix.shape)}"
            f" classes x {list(a.bin_count.shape)} bins and {list(b.confusion_matrix.shape)}"
            f" x {list(b.bin_count.shape)}"
        )
    return Statistics(
        a.confusion_matrix + b.confusion_matrix,
        a.focal_loss_sum + b.focal_loss_sum,
        a.cross_entropy_sum + b.cross_entropy_sum,
        a.alpha_sum + b.alpha_sum,
        a.brier_sum + b.brier_sum,
        a.bin_count + b.bin_count,
        a.bin_confidence_sum + b.bin_confidence_sum,
        a.bin_correct + b.bin_correct,
    )


def empty_statistics(
    num_classes: int, num_bins: int = DEFAULT_NUM_BINS, device: Optional[torch.device] = None
) -> Statistics:
    """All-zero statistics, the identity of :func:`merge`."""
    counts = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    per_class = torch.zeros(num_classes, dtype=torch.float64, device=device)
    per_bin = torch.zeros(num_bins, dtype=torch.float64, device=device)
    return Statistics(
        counts,
        per_class,
        per_class.clone(),
        per_class.clone(),
        per_class.clone(),
        per_bin.long(),
        per_bin,
        per_bin.long(),
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
    zero = torch.zeros_like(x[:, 0])

    log_probs = F.log_softmax(x, dim=1)
    probs = torch.exp(log_probs)
    cross_entropy, focal = softmax_focal_terms(log_probs, probs, safe_labels, gamma)
    alpha_true = alpha.to(x.dtype).gather(0, safe_labels)
    focal = torch.where(valid, alpha_true * focal, zero)
    cross_entropy = torch.where(valid, cross_entropy, zero)
    p_true = torch.where(valid, torch.exp(-cross_entropy), zero)
    prediction = x.argmax(dim=1)
    confidence = torch.exp(log_probs.gather(1, prediction.unsqueeze(1)).squeeze(1))
    # sum_k (p_k - [k = y])^2 = sum_k p_k^2 - 2 p_y + 1; the squared norm exports to one
    # ReduceL2 pass (p * p then a sum is two passes over (N, C))
    squares = torch.linalg.vector_norm(probs, 2.0, dim=1).square()
    brier = (squares - 2.0 * p_true + 1.0).clamp_min(0.0)

    valid_count = valid.long()
    correct = ((prediction == labels) & valid).long()
    per_class = torch.zeros(num_classes, dtype=torch.float64, device=x.device)
    cells = torch.zeros(num_classes * num_classes, dtype=torch.long, device=x.device)
    confusion = cells.scatter_add(0, safe_labels * num_classes + prediction, valid_count)
    bins = _calibration_bin(confidence, num_bins)
    per_bin = torch.zeros(num_bins, dtype=torch.float64, device=x.device)

    statistics = Statistics(
        confusion.reshape(num_classes, num_classes),
        per_class.scatter_add(0, safe_labels, focal.double()),
        per_class.scatter_add(0, safe_labels, cross_entropy.double()),
        per_class.scatter_add(0, safe_labels, torch.where(valid, alpha_true, zero).double()),
        per_class.scatter_add(0, safe_labels, torch.where(valid, brier, zero).double()),
        per_bin.long().scatter_add(0, bins, valid_count),
        per_bin.scatter_add(0, bins, torch.where(valid, confidence, zero).double()),
        per_bin.long().scatter_add(0, bins, correct),
    )
    return PerSample(focal, cross_entropy, p_true, prediction, confidence), statistics


def _calibration_bin(confidence: Tensor, num_bins: int) -> Tensor:
    """Index ``b`` of the bin :math:`(b/B, (b+1)/B]` holding each confidence."""
    scaled = torch.ceil(confidence * num_bins) - 1.0
    return scaled.clamp(0.0, float(num_bins - 1)).long()
