"""Flat-tuple forms of focal/'s graph modules, the output layout every artifact shares."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from focal_eval.focal.functional import _sigmoid_focal_loss


def flatten(outputs: Any) -> list[Tensor]:
    """The tensors of (nested) tuples and named tuples, depth first: the graphs' output order."""
    if isinstance(outputs, Tensor):
        return [outputs]
    return [tensor for item in outputs for tensor in flatten(item)]


class Flat(nn.Module):
    """A graph module of focal/ returning its outputs as one flat tuple.

    torch.export cannot serialise named-tuple outputs; flat tuples in the manifest's order are
    the one layout the ONNX and ``.pt2`` artifacts share (TorchScript keeps the named tuples,
    whose flattening is the same order). Its ``forward`` takes ``*inputs``: give
    ``torch.export`` its dynamic shapes as ``{"inputs": (...)}``.
    """

    def __init__(self, step: nn.Module) -> None:
        super().__init__()
        self.step = step

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        """The step, flattened."""
        return tuple(flatten(self.step(*inputs)))


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


def example_multilabel_inputs(n: int = 64, num_labels: int = 5) -> tuple[Tensor, ...]:
    """Inputs to trace the multi-label step with: logits, 0/1 targets, four scalars."""
    generator = torch.Generator().manual_seed(0)
    return (
        torch.randn(n, num_labels, generator=generator),
        torch.randint(0, 2, (n, num_labels), generator=generator),
        torch.tensor(0.25),
        torch.tensor(2.0),
        torch.tensor(0.5),
        torch.tensor(-100),
    )


def example_ranking_inputs(n: int = 64, c: int = 5) -> tuple[Tensor, ...]:
    """Inputs to trace the ranking step with: ``(logits, labels, ignore_index)``."""
    logits, labels, _, _, ignore_index = example_evaluation_inputs(n, c)
    return logits, labels, ignore_index
