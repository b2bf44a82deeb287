"""torch.export writer: a graph module as an ``ExportedProgram`` (``.pt2``), outputs flat."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from focal_eval.export._flat import Flat


def export_program(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    dynamic_shapes: dict[str, dict[int, Any]],
    path: Path,
) -> nn.Module:
    """Export ``module`` flattened, save it to ``path``, and return it loaded back.

    ``dynamic_shapes`` maps each input's name, in order, to its dynamic dims.
    """
    program = torch.export.export(
        Flat(module).eval(), args, dynamic_shapes={"inputs": tuple(dynamic_shapes.values())}
    )
    torch.export.save(program, path)
    return torch.export.load(path).module()
