"""The fused evaluation kernel: an onnxruntime custom-op library built from ``focal_kernel.cc``.

It computes the multi-class evaluation step (per-sample values and statistics, the evaluation
graph's outputs without its metrics) in one pass over each row; ``fused_evaluation.onnx`` is a
graph of that one op. The library is built with the package (setup.py) where a C++ compiler
is present; :func:`library_path` finds it. The service never needs it: the portable graph is
the reference and the fallback.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOMAIN = "ai.focal_eval"
OP = "FocalEvaluation"
MODULE = "focal_eval.service.kernel._focal_kernel"
NON_FINITE = "logits must be finite"  # how a kernel's error begins when it meets one (op.h)


def library_path() -> Path | None:
    """The built library of this installation, or None where it was not built."""
    spec = importlib.util.find_spec(MODULE)
    return None if spec is None or spec.origin is None else Path(spec.origin)
