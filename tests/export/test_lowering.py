"""export/lowering.py: the vector norm as onnxruntime runs it fastest, other norms untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from focal_eval.export.onnx import export_onnx
from focal_eval.export.signature import dynamic_shapes


class Norm(nn.Module):
    def __init__(self, ord: float, dim: int | None) -> None:
        super().__init__()
        self.ord, self.dim = ord, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm: torch.Tensor = torch.linalg.vector_norm(x, self.ord, dim=self.dim)
        return norm


@pytest.mark.parametrize(
    ("ord", "dim", "op"),
    [
        pytest.param(2.0, 1, "ReduceSum", id="two-norm-of-rows"),
        pytest.param(1.0, 1, "ReduceL1", id="one-norm-of-rows"),
        pytest.param(2.0, None, "ReduceL2", id="two-norm-of-everything"),
    ],
)
def test_vector_norm_is_lowered_by_order_and_matches_float64(
    tmp_path: Path, ord: float, dim: int | None, op: str
) -> None:
    path = tmp_path / "norm.onnx"
    x = torch.randn(37, 11, generator=torch.Generator().manual_seed(0)) * 30
    signature = [{"name": "x", "dtype": "float32", "shape": ["N", "C"]}]
    export_onnx(Norm(ord, dim), (x,), path, ["x"], ["norm"], dynamic_shapes(signature), 18)
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert op in ops
    assert ("ReduceL2" in ops) == (op == "ReduceL2")
    wider = np.random.default_rng(1).normal(0, 30, (53, 7)).astype(np.float32)
    (got,) = onnxruntime.InferenceSession(str(path)).run(None, {"x": wider})
    want = np.linalg.norm(wider.astype(np.float64), ord if dim is not None else None, axis=dim)
    np.testing.assert_allclose(got, want, rtol=1e-6)
