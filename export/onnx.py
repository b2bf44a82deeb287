"""ONNX writer: the dynamo exporter from the eager module, then the checker and shape inference.

NUMERICS.md: the dynamo exporter is the one that lowers ``scatter_add`` faithfully; it refuses
ScriptModules, so ONNX is exported from eager modules; ``external_data=False`` keeps one file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from focal_eval.export.lowering import LOWERINGS

MIN_OPSET = 18

_ONNX_DTYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.BOOL: "bool",
}


def check_opset(opset: int) -> None:
    """``opset`` must be at least :data:`MIN_OPSET` (in-graph aggregation needs it)."""
    if opset < MIN_OPSET:
        raise ValueError(f"Expected argument `opset` to be >= {MIN_OPSET}, but got {opset}")


def export_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_shapes: Any,
    opset: int,
) -> None:
    """Export ``module`` on ``args`` to ``path`` and check the file.

    Raises:
        ValueError: ``opset`` is below :data:`MIN_OPSET`.
        onnx.checker.ValidationError: the written model fails the full check.
    """
    check_opset(opset)
    with _quiet_exporter():
        program = torch.onnx.export(
            module.eval(),
            args,
            dynamo=True,
            opset_version=opset,
            external_data=False,
            verbose=False,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=dynamic_shapes,
            custom_translation_table=LOWERINGS,
        )
    assert program is not None
    model = program.model_proto
    _strip_debug_metadata(model)
    onnx.save(model, path)
    check_onnx(path)


def check_onnx(path: Path) -> None:
    """``onnx.checker`` with ``full_check`` and strict shape inference, or raise."""
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


def graph_signature(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Inputs and outputs as the ONNX graph itself declares them: name, dtype, shape."""
    graph = onnx.load(path).graph
    return [_describe(v) for v in graph.input], [_describe(v) for v in graph.output]


def _describe(value: onnx.ValueInfoProto) -> dict[str, Any]:
    tensor = value.type.tensor_type
    shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
    return {"name": value.name, "dtype": _ONNX_DTYPES[tensor.elem_type], "shape": shape}


def _strip_debug_metadata(model: onnx.ModelProto) -> None:
    """Drop per-node stack traces and FX names: 85% of the file, and the build's local paths."""
    for node in model.graph.node:
        del node.metadata_props[:]
    for function in model.functions:
        for node in function.node:
            del node.metadata_props[:]


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress lines, its log, and two known-harmless warnings."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping ..."
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # torch 2.13's own pytree deprecation, raised inside the exporter
        warnings.filterwarnings("ignore", "`isinstance\\(treespec, LeafSpec\\)`", FutureWarning)
        # two dynamic dims with the same constraints keep the first name; ours are distinct
        warnings.filterwarnings("ignore", "# The axis name: .* will not be used", UserWarning)
        try:
            yield
        finally:
            exporter_log.setLevel(level)
