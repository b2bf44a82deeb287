"""torch.export writer: the evaluation step as an ``ExportedProgram`` (``.pt2``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from focal_eval.export._flat import FlatEvaluationStep, example_evaluation_inputs


def evaluation_dynamic_shapes() -> tuple[dict[int, Any], ...]:
    """N and C dynamic in every input that has them; gamma and ignore_index are 0-d."""
    n, c = torch.export.Dim("N"), torch.export.Dim("C")
    return ({0: n, 1: c}, {0: n}, {0: c}, {}, {})


def export_program(path: Path, num_bins: int) -> nn.Module:
    """Export the flat evaluation step with dynamic N and C, save, and return it loaded back."""
    program = torch.export.export(
        FlatEvaluationStep(num_bins).eval(),
        example_evaluation_inputs(),
        dynamic_shapes=evaluation_dynamic_shapes(),
    )
    torch.export.save(program, path)
    return torch.export.load(path).module()
