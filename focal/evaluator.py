"""A stateful evaluator: running statistics over many batches, built on the functional step."""

from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import Tensor

from focal_eval.focal._validation import check_alpha
from focal_eval.focal.metrics import Metrics, _compute
from focal_eval.focal.statistics import (
    DEFAULT_NUM_BINS,
    PerSample,
    Statistics,
    _update,
    check_update_arguments,
    check_update_tensors,
    empty_statistics,
    merge,
)


class Evaluator:
    """Accumulates additive statistics batch by batch; metrics on demand.

    Arguments are checked once here; each :meth:`update` checks its tensors and runs the same
    private step as :func:`focal_eval.focal.statistics.update`.

    Args:
        num_classes: C.
        alpha: ``(C,)`` class weights or None for all ones.
        gamma: focusing parameter, ``>= 0``.
        ignore_index: label value of rows to skip.
        num_bins: calibration bins.
        device: where the running statistics live.

    Example:
        >>> evaluator = Evaluator(num_classes=3, gamma=2.0)
        >>> _ = evaluator.update(torch.randn(10, 3), torch.randint(0, 3, (10,)))
        >>> _ = evaluator.update(torch.randn(5, 3), torch.randint(0, 3, (5,)))
        >>> int(evaluator.statistics.confusion_matrix.sum())
        15
    """

    def __init__(
        self,
        num_classes: int,
        alpha: Optional[Union[Sequence[float], Tensor]] = None,
        gamma: float = 2.0,
        ignore_index: int = -100,
        num_bins: int = DEFAULT_NUM_BINS,
        device: Optional[torch.device] = None,
    ) -> None:
        check_update_arguments(gamma, num_bins)
        if num_classes < 2:
            raise ValueError(
                f"Expected argument `num_classes` to be an integer >= 2, but got {num_classes}"
            )
        weights = (
            torch.ones(num_classes, device=device)
            if alpha is None
            else torch.as_tensor(alpha, dtype=torch.float32, device=device)
        )
        check_alpha(weights, num_classes, allow_scalar=False)
        self.num_classes = num_classes
        self.alpha = weights
        self.gamma = float(gamma)
        self.ignore_index = int(ignore_index)
        self.num_bins = num_bins
        self.device = device
        self.statistics: Statistics = empty_statistics(num_classes, num_bins, device)

    def update(self, logits: Tensor, labels: Tensor) -> PerSample:
        """Score a batch, add its statistics to the running ones, return its per-sample values.

        Raises:
            ValueError: a tensor does not fit (shape, dtype, label range, non-finite logits).
        """
        check_update_tensors(logits, labels, None, self.ignore_index)  # alpha checked in __init__
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"Expected `logits` with {self.num_classes} classes, but got {logits.shape[1]}"
            )
        per_sample, statistics = _update(
            logits,
            labels.long(),
            self.alpha,
            torch.tensor(self.gamma, dtype=torch.float64),
            torch.tensor(self.ignore_index),
            self.num_bins,
        )
        self.statistics = merge(self.statistics, statistics)
        return per_sample

    def compute(self) -> Metrics:
        """Metrics of everything seen since construction or the last :meth:`reset`."""
        return _compute(self.statistics)

    def reset(self) -> None:
        """Forget every batch seen."""
        self.statistics = empty_statistics(self.num_classes, self.num_bins, self.device)

    def merge(self, other: "Evaluator") -> None:
        """Add another evaluator's statistics (e.g. from another process) to this one's.

        Raises:
            ValueError: the two differ in classes, bins, gamma, alpha or ignore_index, so their
                sums would not describe one evaluation.
        """
        same = (
            other.num_classes == self.num_classes
            and other.num_bins == self.num_bins
            and other.gamma == self.gamma
            and other.ignore_index == self.ignore_index
            and torch.equal(other.alpha.cpu(), self.alpha.cpu())
        )
        if not same:
            raise ValueError(
                "Expected an evaluator with the same num_classes, num_bins, gamma, alpha and"
                " ignore_index"
            )
        self.statistics = merge(self.statistics, other.statistics)
