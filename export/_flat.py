"""Flat-tuple forms of focal/'s graph modules, the output layout every artifact shares."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from focal_eval.focal import EvaluationStep, Metrics, PerSample, Statistics
from focal_eval.focal.functional import _sigmoid_focal_loss

EVALUATION_INPUTS = ("logits", "labels", "alpha", "gamma", "ignore_index")
EVALUATION_OUTPUTS = PerSample._fields + Statistics._fields + Metrics._fields
METRICS_INPUTS = Statistics._fields
METRICS_OUTPUTS = Metrics._fields
SIGMOID_INPUTS = ("logits", "targets")
SIGMOID_OUTPUTS = ("focal_loss",)


class FlatEvaluationStep(nn.Module):
    """:class:`focal_eval.focal.EvaluationStep` returning its outputs as one flat tuple.

    torch.export cannot serialise named-tuple outputs; flat tuples in the manifest's order are
    the one layout the ONNX and ``.pt2`` artifacts share (TorchScript keeps the named tuples,
    whose flattening is the same order).
    """

    def __init__(self, num_bins: int) -> None:
        super().__init__()
        self.step = EvaluationStep(num_bins)

    def forward(
        self, logits: Tensor, labels: Tensor, alpha: Tensor, gamma: Tensor, ignore_index: Tensor
    ) -> tuple[Tensor, ...]:
        """The evaluation step, flattened."""
        outputs = self.step(logits, labels, alpha, gamma, ignore_index)
        return tuple(tensor for group in outputs for tensor in group)


class SigmoidFocalLossGraph(nn.Module):
    """Per-element sigmoid focal loss with constant ``alpha`` / ``gamma``, unchecked."""

    def __init__(self, alpha: float, gamma: float) -> None:
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Per-element loss, ``reduction="none"``."""
        return _sigmoid_focal_loss(logits, targets, self.alpha, self.gamma, "none")


def example_evaluation_inputs(
    n: int = 64, c: int = 5
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Inputs to trace the evaluation step with (values do not matter, dtypes do)."""
    generator = torch.Generator().manual_seed(0)
    return (
        torch.randn(n, c, generator=generator),
        torch.randint(0, c, (n,), generator=generator),
        torch.ones(c),
        torch.tensor(2.0),
        torch.tensor(-100),
    )
