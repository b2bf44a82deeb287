"""Metrics as responses group them: scalars in ``metrics``, per-class (or per-label) arrays.

One function for ``/score`` and ``/compute``, from the manifests' output groups: scalar metrics
are the evaluation graphs' ``metrics`` of rank 0, per-class or per-label ones of rank 1. A
binary batch has one label: its per-label values are scalars in ``metrics``, beside the
scalars that are not averages over labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from focal_eval.service.core.scoring import Outputs, Scorer
from focal_eval.service.core.tasks import BINARY

AVERAGED = ("macro_", "micro_", "weighted_", "samples_")  # averages over labels: not binary's


def metric_groups(task: str, scorers: Sequence[Scorer], outputs: Outputs) -> dict[str, Any]:
    """``{"metrics": {...}}`` and, but for binary, ``{"per_class" | "per_label": {...}}``.

    ``scorers``: the task's, then any that added outputs (ranking); NaN stays NaN here (the
    JSON encoder writes it as null).
    """
    metrics = [name for s in scorers for name in s.names("metrics", 0)]
    per_width = [name for s in scorers for name in s.names("metrics", 1)]
    if task == BINARY:
        return {
            "metrics": {
                **{name: float(outputs[name]) for name in metrics if not averaged(name)},
                **{name: outputs[name][0].item() for name in per_width},
            }
        }
    return {
        "metrics": {name: float(outputs[name]) for name in metrics},
        f"per_{scorers[0].task.unit}": {name: outputs[name] for name in per_width},
    }


def averaged(name: str) -> bool:
    """Whether a metric averages over labels (none of a binary batch's)."""
    return name.startswith(AVERAGED)
