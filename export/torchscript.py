"""TorchScript writer: ``torch.jit.script`` + ``save``, round-tripped through ``load``.

TorchScript is deprecated in torch 2.13 and each call warns; users still ask for it, so the
three deprecation warnings are filtered here by message, and nowhere else.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from focal_eval.focal import EvaluationStep


def export_torchscript(path: Path, num_bins: int) -> torch.jit.ScriptModule:
    """Script the evaluation step, save it to ``path``, and return it as loaded back."""
    return save_scripted(EvaluationStep(num_bins), path)


def save_scripted(module: nn.Module, path: Path) -> torch.jit.ScriptModule:
    """Script ``module``, save it to ``path``, and return it as loaded back."""
    with warnings.catch_warnings():
        for call in ("script", "save", "load"):
            warnings.filterwarnings(
                "ignore", f"`torch.jit.{call}` is deprecated", DeprecationWarning
            )
        torch.jit.save(torch.jit.script(module), str(path))
        loaded: torch.jit.ScriptModule = torch.jit.load(str(path))  # type: ignore[no-untyped-call]
        return loaded
