"""Names, dtypes and symbolic shapes of a graph's tensors, found by running it at two sizes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

PROBES = ((11, 7), (13, 9))  # (rows, width) twice: a dimension that follows one is symbolic


def symbolic(
    produce: Callable[[int, int], Sequence[torch.Tensor]],
    names: Sequence[str],
    symbols: tuple[str, str] = ("N", "C"),
) -> list[dict[str, Any]]:
    """``{"name", "dtype", "shape"}`` of each tensor ``produce(rows, width)`` gives.

    A dimension is a constant, or ``symbols[0]`` / ``symbols[1]`` where it follows the rows /
    the width (``"N"`` and ``"C"`` for classes, ``"L"`` for labels).

    Raises:
        ValueError: a dimension follows neither.
    """
    (n1, w1), (n2, w2) = PROBES
    first, second = produce(n1, w1), produce(n2, w2)
    following = {(n1, n2): symbols[0], (w1, w2): symbols[1]}
    described = []
    for name, a, b in zip(names, first, second, strict=True):
        pairs = list(zip(a.shape, b.shape, strict=True)) if a.dim() == b.dim() else None
        if pairs is None or any(d1 != d2 and (d1, d2) not in following for d1, d2 in pairs):
            raise ValueError(
                f"Expected each dimension of `{name}` to be a constant, {symbols[0]} or"
                f" {symbols[1]}, but got {list(a.shape)} at {symbols[0]}={n1},"
                f" {symbols[1]}={w1} and {list(b.shape)} at {symbols[0]}={n2}, {symbols[1]}={w2}"
            )
        shape = [d1 if d1 == d2 else following[(d1, d2)] for d1, d2 in pairs]
        described.append(
            {"name": name, "dtype": str(a.dtype).removeprefix("torch."), "shape": shape}
        )
    return described


def dynamic_shapes(signature: list[dict[str, Any]]) -> dict[str, dict[int, Any]]:
    """``torch.export`` dims, by input name, for each symbolic dimension (one Dim per symbol).

    (A second dynamic dim with the same constraints as another would be given the other's name
    in the ONNX graph, and onnxruntime would then share buffers between the two.)
    """
    dims: dict[str, Any] = {}
    shapes: dict[str, dict[int, Any]] = {}
    for entry in signature:
        shapes[entry["name"]] = {
            axis: dims.setdefault(size, torch.export.Dim(size))
            for axis, size in enumerate(entry["shape"])
            if isinstance(size, str)
        }
    return shapes
