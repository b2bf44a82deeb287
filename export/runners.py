"""Runners: each runtime, and each way of feeding a metrics graph, as ``inputs -> arrays``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from torch import nn

from focal_eval.export._flat import flatten
from focal_eval.export.kinds import statistics
from focal_eval.export.parity import Runner
from focal_eval.export.sweeps import Inputs


def torch_runner(module: nn.Module | torch.jit.ScriptModule) -> Runner:
    """Run a torch module (eager, scripted or exported) and flatten its outputs to numpy."""

    def run(inputs: Inputs) -> list[np.ndarray]:
        with torch.no_grad():
            return [t.numpy() for t in flatten(module(*inputs))]

    return run


def onnx_runner(path: Path, libraries: Sequence[Path] = ()) -> Runner:
    """Run an ONNX file in one onnxruntime session, inputs fed in graph order.

    ``libraries`` are custom-op libraries its nodes need (the fused kernel's).
    """
    options = onnxruntime.SessionOptions()
    for library in libraries:
        options.register_custom_ops_library(str(library))
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(inputs: Inputs) -> list[np.ndarray]:
        feeds = {name: t.numpy() for name, t in zip(names, inputs, strict=True)}
        return list(session.run(None, feeds))

    return run


def merged_runner(
    metrics_graph: Runner, step: nn.Module, merge: Callable[[Any, Any], Any]
) -> Runner:
    """``metrics_graph`` on the statistics of the batch's two halves (by ``step``), merged."""

    def run(inputs: Inputs) -> Sequence[np.ndarray]:
        half = inputs[0].shape[0] // 2
        first = statistics(step, inputs, slice(0, half))
        second = statistics(step, inputs, slice(half, None))
        return metrics_graph(tuple(merge(first, second)))

    return run


def whole_runner(metrics: Runner, step: nn.Module) -> Runner:
    """``metrics`` (eager) on the statistics of the whole batch."""
    return lambda inputs: metrics(tuple(statistics(step, inputs)))
