"""Focal loss as tutorials write it (multi-class and sigmoid): eager PyTorch, loss only.

The form found in blog posts and answers (cross entropy with ``reduction="none"``,
``p_t = exp(-ce)``, ``(1 - p_t) ** gamma``, ``alpha[targets]``), kept here only as a
baseline for the benchmarks. It is the textbook formula, but has none of the care of
:mod:`focal` (NaN gradients for ``gamma < 1`` at saturation, no ``ignore_index``, no metrics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def tutorial_focal_loss(
    logits: Tensor, targets: Tensor, alpha: Tensor, gamma: float = 2.0, reduction: str = "mean"
) -> Tensor:
    """Focal loss, ``-alpha_t (1 - p_t)^gamma log(p_t)``, written the way tutorials do.

    Args:
        logits: ``(N, C)`` raw scores.
        targets: ``(N,)`` class indices in ``[0, C)``.
        alpha: ``(C,)`` per-class weights.
        gamma: Focusing parameter.
        reduction: ``"mean"`` (what the tutorials return), ``"sum"`` or ``"none"``.

    Returns:
        The reduced loss, or ``(N,)`` per-sample losses for ``"none"``.

    Example:
        >>> logits, targets = torch.zeros(2, 3), torch.tensor([0, 2])
        >>> round(tutorial_focal_loss(logits, targets, torch.ones(3), gamma=0.0).item(), 4)
        1.0986
    """
    ce = F.cross_entropy(logits, targets, reduction="none")
    p_t = torch.exp(-ce)
    loss = alpha[targets] * (1 - p_t) ** gamma * ce
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def tutorial_sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Sigmoid focal loss as tutorials write it (torchvision's steps), mean over elements.

    ``ce = BCE-with-logits``, ``p_t = p t + (1 - p)(1 - t)``, ``alpha_t (1 - p_t)^gamma ce``;
    ``targets`` are floats in {0, 1}, as ``binary_cross_entropy_with_logits`` needs.

    Example:
        >>> logits, targets = torch.zeros(2, 3), torch.ones(2, 3)
        >>> round(tutorial_sigmoid_focal_loss(logits, targets, 0.25, 0.0).item(), 4)
        0.1733
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * (1 - p_t) ** gamma * ce).mean()
