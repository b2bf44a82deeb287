"""``export_all``: write every artifact, check each against eager PyTorch, write manifests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from torch import nn

from focal_eval.export._flat import (
    EVALUATION_INPUTS,
    EVALUATION_OUTPUTS,
    METRICS_INPUTS,
    METRICS_OUTPUTS,
    SIGMOID_INPUTS,
    SIGMOID_OUTPUTS,
    FlatEvaluationStep,
    SigmoidFocalLossGraph,
    example_evaluation_inputs,
)
from focal_eval.export.manifest import write_manifest
from focal_eval.export.onnx import check_opset, export_onnx, graph_signature
from focal_eval.export.parity import Case, Inputs, Parity, Runner, builtin_cases, measure
from focal_eval.export.program import evaluation_dynamic_shapes, export_program
from focal_eval.export.torchscript import export_torchscript
from focal_eval.focal import MetricsFromStatistics, PerSample, Statistics, compute, merge, update
from focal_eval.focal._validation import check_gamma, check_num_bins

FORMATS = ("onnx", "torchscript", "pt2")
SIGMOID_ALPHA = 0.25


@dataclass(frozen=True)
class ArtifactReport:
    """One written artifact and its parity against eager PyTorch."""

    path: Path
    kind: str
    format: str
    parity: Parity


def export_all(
    out_dir: Path,
    *,
    gamma: float = 2.0,
    ignore_index: int = -100,
    num_bins: int = 15,
    opset: int = 18,
    formats: Sequence[str] = FORMATS,
    cases: Sequence[Case] | None = None,
) -> list[ArtifactReport]:
    """Write the evaluation step (every format), the metrics and sigmoid graphs (ONNX).

    ``gamma`` and ``ignore_index`` are graph inputs; their values here are the defaults the
    manifest records for servers. Raises ValueError for an unknown format, a bad opset, a
    gamma that is negative or not finite, or fewer than one bin, before writing anything.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"Expected argument `formats` among {FORMATS}, but got {sorted(unknown)}")
    check_gamma(gamma)
    check_num_bins(num_bins)
    if "onnx" in formats:
        check_opset(opset)
    out_dir.mkdir(parents=True, exist_ok=True)
    sweep = list(cases) if cases is not None else builtin_cases()
    defaults = {"gamma": gamma, "ignore_index": ignore_index, "num_bins": num_bins, "alpha": None}
    reference = torch_runner(FlatEvaluationStep(num_bins))
    inputs, outputs = evaluation_signature(num_bins)

    def finish(
        path: Path,
        kind: str,
        fmt: str,
        parity: Parity,
        opset: int | None = None,
        signature: tuple[list[dict[str, Any]], list[dict[str, Any]]] = (inputs, outputs),
    ) -> None:
        write_manifest(
            path,
            kind=kind,
            format=fmt,
            inputs=signature[0],
            outputs=signature[1],
            defaults=defaults,
            parity=parity.as_dict(),
            opset=opset,
        )
        reports.append(ArtifactReport(path, kind, fmt, parity))

    reports: list[ArtifactReport] = []
    if "onnx" in formats:
        path = out_dir / "evaluation.onnx"
        export_onnx(
            FlatEvaluationStep(num_bins),
            example_evaluation_inputs(),
            path,
            EVALUATION_INPUTS,
            EVALUATION_OUTPUTS,
            dict(zip(EVALUATION_INPUTS, evaluation_dynamic_shapes(), strict=True)),
            opset,
        )
        parity = measure(onnx_runner(path), reference, sweep, EVALUATION_OUTPUTS)
        finish(path, "evaluation", "onnx", parity, opset=opset)
        path = out_dir / "metrics.onnx"
        _export_metrics_onnx(path, num_bins, opset)
        parity = measure(
            merged_metrics_runner(onnx_runner(path), num_bins),
            whole_metrics_runner(num_bins),
            sweep,
            METRICS_OUTPUTS,
        )
        finish(path, "metrics", "onnx", parity, opset=opset, signature=graph_signature(path))
        path = out_dir / "sigmoid_focal_loss.onnx"
        graph = SigmoidFocalLossGraph(SIGMOID_ALPHA, gamma)
        _export_sigmoid_onnx(path, graph, opset)
        parity = measure(
            onnx_runner(path), torch_runner(graph), sigmoid_cases(), SIGMOID_OUTPUTS, sigmoid_inputs
        )
        finish(
            path,
            "sigmoid_focal_loss",
            "onnx",
            parity,
            opset=opset,
            signature=graph_signature(path),
        )
    if "torchscript" in formats:
        path = out_dir / "evaluation.torchscript.pt"
        parity = measure(
            torch_runner(export_torchscript(path, num_bins)), reference, sweep, EVALUATION_OUTPUTS
        )
        finish(path, "evaluation", "torchscript", parity)
    if "pt2" in formats:
        path = out_dir / "evaluation.pt2"
        parity = measure(
            torch_runner(export_program(path, num_bins)), reference, sweep, EVALUATION_OUTPUTS
        )
        finish(path, "evaluation", "torch.export", parity)
    return reports


def torch_runner(module: nn.Module | torch.jit.ScriptModule) -> Runner:
    """Run a torch module (eager, scripted or exported) and flatten its outputs to numpy."""

    def run(inputs: Inputs) -> list[np.ndarray]:
        with torch.no_grad():
            return [t.numpy() for t in _flatten(module(*inputs))]

    return run


def onnx_runner(path: Path) -> Runner:
    """Run an ONNX file in one onnxruntime session, inputs fed in graph order."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(inputs: Inputs) -> list[np.ndarray]:
        feeds = {name: t.numpy() for name, t in zip(names, inputs, strict=True)}
        return list(session.run(None, feeds))

    return run


def merged_metrics_runner(metrics_graph: Runner, num_bins: int) -> Runner:
    """Statistics of the batch's two halves, merged, through ``metrics_graph``."""

    def run(inputs: Inputs) -> Sequence[np.ndarray]:
        half = inputs[0].shape[0] // 2
        first = _statistics(inputs, slice(0, half), num_bins)
        second = _statistics(inputs, slice(half, None), num_bins)
        return metrics_graph(tuple(merge(first, second)))

    return run


def whole_metrics_runner(num_bins: int) -> Runner:
    """Eager ``compute`` of the whole batch's statistics."""
    return lambda inputs: [t.numpy() for t in compute(_statistics(inputs, slice(None), num_bins))]


def sigmoid_cases() -> list[Case]:
    """Binary / multi-label batches up to |x| = 1e4, where log(sigmoid) exports give NaN."""
    return [
        Case(n, k, 2.0, False, 0.0, scale)
        for n, k in ((1, 1), (64, 5))
        for scale in (1.0, 30.0, 1e4)
    ]


def sigmoid_inputs(case: Case) -> Inputs:
    """``(logits, targets)`` with hard 0/1 targets."""
    generator = torch.Generator().manual_seed(case.n * case.c)
    logits = torch.randn(case.n, case.c, generator=generator) * case.scale
    targets = (torch.rand(case.n, case.c, generator=generator) < 0.3).float()
    return logits, targets


def evaluation_signature(num_bins: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Names, dtypes and symbolic shapes of the evaluation step's inputs and outputs."""
    step = FlatEvaluationStep(num_bins)
    groups = ["per_sample"] * len(PerSample._fields) + ["statistics"] * len(Statistics._fields)
    groups += ["metrics"] * (len(EVALUATION_OUTPUTS) - len(groups))
    inputs = _symbolic(lambda n, c: list(example_evaluation_inputs(n, c)), EVALUATION_INPUTS)
    outputs = _symbolic(
        lambda n, c: list(step(*example_evaluation_inputs(n, c))), EVALUATION_OUTPUTS
    )
    return inputs, [entry | {"group": group} for entry, group in zip(outputs, groups, strict=True)]


def _symbolic(
    produce: Callable[[int, int], list[torch.Tensor]], names: Sequence[str]
) -> list[dict[str, Any]]:
    """Shapes with "N" / "C" where they follow the batch size / class count (two probes)."""
    first, second = produce(11, 7), produce(13, 9)
    symbols = {(11, 13): "N", (7, 9): "C"}
    described = []
    for name, a, b in zip(names, first, second, strict=True):
        if a.dim() != b.dim() or any(
            d1 != d2 and (d1, d2) not in symbols for d1, d2 in zip(a.shape, b.shape, strict=True)
        ):
            raise ValueError(
                f"Expected each dimension of `{name}` to be a constant, N or C, but got"
                f" {list(a.shape)} at N=11, C=7 and {list(b.shape)} at N=13, C=9"
            )
        shape = [
            d1 if d1 == d2 else symbols[(d1, d2)] for d1, d2 in zip(a.shape, b.shape, strict=True)
        ]
        described.append(
            {"name": name, "dtype": str(a.dtype).removeprefix("torch."), "shape": shape}
        )
    return described


def _statistics(inputs: Inputs, rows: slice, num_bins: int) -> Statistics:
    logits, labels, alpha, gamma, ignore_index = inputs
    _, statistics = update(
        logits[rows], labels[rows], alpha, float(gamma), int(ignore_index), num_bins
    )
    return statistics


def _flatten(outputs: Any) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [tensor for item in outputs for tensor in _flatten(item)]


def metrics_inputs_signature(num_bins: int) -> list[dict[str, Any]]:
    """Names, dtypes and symbolic shapes of the metrics graph's inputs: the statistics."""
    return _symbolic(
        lambda n, c: list(_statistics(example_evaluation_inputs(n, c), slice(None), num_bins)),
        METRICS_INPUTS,
    )


def _export_metrics_onnx(path: Path, num_bins: int, opset: int) -> None:
    """C dynamic wherever a statistic's shape follows it; the bin count is a constant.

    (A second dynamic dim with the same constraints as C would be given C's name in the ONNX
    graph, and onnxruntime would then share buffers between the two.)
    """
    _, statistics = update(*example_evaluation_inputs()[:2], num_bins=num_bins)
    export_onnx(
        MetricsFromStatistics(),
        tuple(statistics),
        path,
        METRICS_INPUTS,
        METRICS_OUTPUTS,
        _dynamic_shapes(metrics_inputs_signature(num_bins)),
        opset,
    )


def _dynamic_shapes(signature: list[dict[str, Any]]) -> dict[str, dict[int, Any]]:
    """``torch.export`` dims, by input name, for each symbolic ("N" / "C") dimension."""
    dims: dict[str, Any] = {}
    shapes: dict[str, dict[int, Any]] = {}
    for entry in signature:
        shapes[entry["name"]] = {
            axis: dims.setdefault(size, torch.export.Dim(size))
            for axis, size in enumerate(entry["shape"])
            if isinstance(size, str)
        }
    return shapes


def _export_sigmoid_onnx(path: Path, graph: SigmoidFocalLossGraph, opset: int) -> None:
    n, k = torch.export.Dim("N"), torch.export.Dim("K")
    shapes = {name: {0: n, 1: k} for name in SIGMOID_INPUTS}
    export_onnx(
        graph,
        sigmoid_inputs(Case(8, 3, 2.0, False, 0.0, 1.0)),
        path,
        SIGMOID_INPUTS,
        SIGMOID_OUTPUTS,
        shapes,
        opset,
    )
