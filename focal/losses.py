"""``nn.Module`` forms of the focal losses: arguments checked once, ``forward`` is one call."""

from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import Tensor, nn

from focal_eval.focal.functional import (
    _check_sigmoid_arguments,
    _check_sigmoid_tensors,
    _check_softmax_arguments,
    _check_softmax_tensors,
    _sigmoid_focal_loss,
    _softmax_focal_loss,
)


class FocalLoss(nn.Module):
    r"""Multi-class softmax focal loss; see :func:`focal_eval.focal.functional.softmax_focal_loss`.

    Args:
        alpha: per-class weights (a sequence or ``(C,)`` tensor), a float that weighs every
            class alike, or None.
        gamma: focusing parameter, ``>= 0``.
        ignore_index: target value to skip.
        label_smoothing: in ``[0, 1)``, Keras-like soft targets.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        normalization: ``"weight"`` (as ``F.cross_entropy``) or ``"valid"``.

    Shape:
        - input: :math:`(N, C)` or :math:`(N, C, d_1, \ldots, d_k)`.
        - target: :math:`(N)` or :math:`(N, d_1, \ldots, d_k)`.

    Example:
        >>> criterion = FocalLoss(alpha=[1.0, 2.0, 0.5], gamma=2.0)
        >>> loss = criterion(torch.randn(8, 3), torch.randint(0, 3, (8,)))
        >>> loss.shape
        torch.Size([])
    """

    alpha: Optional[Tensor]

    def __init__(
        self,
        alpha: Optional[Union[float, Sequence[float], Tensor]] = None,
        gamma: float = 2.0,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        normalization: str = "weight",
    ) -> None:
        super().__init__()
        _check_softmax_arguments(gamma, label_smoothing, reduction, normalization)
        self.register_buffer(
            "alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32)
        )
        self.gamma = float(gamma)
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)
        self.reduction = reduction
        self.normalization = normalization

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Focal loss of ``input`` logits against ``target`` class indices."""
        _check_softmax_tensors(input, target, self.alpha, self.ignore_index)
        return _softmax_focal_loss(
            input,
            target,
            self.alpha,
            self.gamma,
            self.ignore_index,
            self.label_smoothing,
            self.reduction,
            self.normalization,
        )


class SigmoidFocalLoss(nn.Module):
    """Binary / multi-label focal loss; see :func:`focal_eval.focal.functional.sigmoid_focal_loss`.

    Example:
        >>> criterion = SigmoidFocalLoss(alpha=0.25, gamma=2.0, reduction="mean")
        >>> criterion(torch.randn(4, 5), torch.randint(0, 2, (4, 5)).float()).shape
        torch.Size([])
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none") -> None:
        super().__init__()
        _check_sigmoid_arguments(alpha, gamma, reduction)
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.reduction = reduction

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Focal loss of ``input`` logits against ``target`` in ``[0, 1]``."""
        _check_sigmoid_tensors(input, target)
        return _sigmoid_focal_loss(input, target, self.alpha, self.gamma, self.reduction)
