"""``export_all``: write every artifact, check each against eager PyTorch, write manifests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from focal_eval.export.fused import FUSED_KINDS, FusedKind, check_fused, fused_model, kernel_library
from focal_eval.export.kinds import (
    FORMATS,
    KINDS,
    TRACE_SIZE,
    GraphKind,
    Options,
    Sweeps,
)
from focal_eval.export.manifest import write_manifest
from focal_eval.export.onnx import check_opset, export_onnx
from focal_eval.export.parity import Parity, Runner, measure
from focal_eval.export.program import export_program
from focal_eval.export.runners import merged_runner, onnx_runner, torch_runner, whole_runner
from focal_eval.export.signature import dynamic_shapes
from focal_eval.export.sweeps import Case, LabelCase, builtin_cases, builtin_label_cases
from focal_eval.export.torchscript import save_scripted
from focal_eval.focal._validation import check_gamma, check_num_bins, check_score_bins

__all__ = ["FORMATS", "ArtifactReport", "export_all", "export_kind"]

FORMAT_NAMES = {"onnx": "onnx", "torchscript": "torchscript", "pt2": "torch.export"}
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "pt2": ".pt2"}


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
    score_bins: int = 100,
    opset: int = 18,
    formats: Sequence[str] = FORMATS,
    cases: Sequence[Case] | None = None,
    label_cases: Sequence[LabelCase] | None = None,
) -> list[ArtifactReport]:
    """Write every kind of :data:`~focal_eval.export.kinds.KINDS` in each of its ``formats``.

    ``gamma`` and ``ignore_index`` are graph inputs (the sigmoid graph's gamma excepted); their
    values here are the defaults the manifests record for servers. ``num_bins`` and
    ``score_bins`` are constants of the graphs. ``cases`` and ``label_cases`` replace the
    built-in multi-class and multi-label sweeps. Raises ValueError for an unknown format, a
    bad opset, a gamma that is negative or not finite, or fewer than one bin, before writing
    anything.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"Expected argument `formats` among {FORMATS}, but got {sorted(unknown)}")
    check_gamma(gamma)
    check_num_bins(num_bins)
    check_score_bins(score_bins)
    if "onnx" in formats:
        check_opset(opset)
    out_dir.mkdir(parents=True, exist_ok=True)
    options = Options(gamma, ignore_index, num_bins, score_bins)
    sweeps = Sweeps(
        list(cases) if cases is not None else builtin_cases(),
        list(label_cases) if label_cases is not None else builtin_label_cases(),
    )
    reports = [
        export_kind(kind, fmt, out_dir, options, sweeps, opset)
        for fmt in FORMATS
        if fmt in formats
        for kind in KINDS
        if fmt in kind.formats
    ]
    library = kernel_library()
    if "onnx" in formats and library is not None:
        for fused in FUSED_KINDS:
            signature = fused.signature(options)
            if signature is not None:
                reports.append(
                    export_fused(fused, signature, library, out_dir, options, sweeps, opset)
                )
    return reports


def export_kind(
    kind: GraphKind, fmt: str, out_dir: Path, options: Options, sweeps: Sweeps, opset: int
) -> ArtifactReport:
    """Write ``kind`` as ``fmt`` into ``out_dir``, check it, and write its manifest."""
    path = out_dir / f"{kind.name}{SUFFIXES[fmt]}"
    inputs, outputs = kind.signature(options)
    module = kind.module(options)
    example = kind.example(options, *TRACE_SIZE)
    runtime: Runner
    if fmt == "onnx":
        shapes = dynamic_shapes(inputs)
        export_onnx(module, example, path, kind.inputs, kind.output_names, shapes, opset)
        runtime = onnx_runner(path)
    elif fmt == "torchscript":
        runtime = torch_runner(save_scripted(module, path))
    else:
        runtime = torch_runner(export_program(module, example, dynamic_shapes(inputs), path))
    parity = check(kind, options, runtime, sweeps)
    write_manifest(
        path,
        kind=kind.name,
        format=FORMAT_NAMES[fmt],
        inputs=inputs,
        outputs=outputs,
        defaults=kind.defaults(options),
        parity=parity.as_dict(),
        opset=opset if fmt == "onnx" else None,
    )
    return ArtifactReport(path, kind.name, FORMAT_NAMES[fmt], parity)


def export_fused(
    kind: FusedKind,
    signature: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    library: Path,
    out_dir: Path,
    options: Options,
    sweeps: Sweeps,
    opset: int,
) -> ArtifactReport:
    """Write a fused graph (:mod:`~focal_eval.export.fused`), check it, write its manifest."""
    path = out_dir / f"{kind.name}.onnx"
    onnx.save(fused_model(kind, signature, options, opset), path)
    parity = check_fused(kind, path, library, options, sweeps)
    write_manifest(
        path,
        kind=kind.name,
        format="onnx",
        inputs=signature[0],
        outputs=signature[1],
        defaults=kind.step.defaults(options),
        parity=parity.as_dict(),
        opset=opset,
    )
    return ArtifactReport(path, kind.name, "onnx", parity)


def check(kind: GraphKind, options: Options, runtime: Runner, sweeps: Sweeps) -> Parity:
    """``runtime`` (an artifact of ``kind``) against eager PyTorch on the kind's cases.

    A step runs on each case's inputs; a metrics graph on the merged statistics of the case's
    two halves, against eager metrics of the whole case's statistics.
    """
    candidate, reference = runtime, torch_runner(kind.module(options))
    if kind.merged is not None:
        step = kind.merged.step.module(options)
        candidate = merged_runner(runtime, step, kind.merged.merge)
        reference = whole_runner(reference, step)
    return measure(
        candidate,
        reference,
        kind.cases(sweeps),
        kind.output_names,
        kind.case_inputs,
        kind.slack,
    )
