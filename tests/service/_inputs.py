"""The inputs every service test draws: reproducible batches of logits and labels.

One generator, so that a test names its batch by shape and seed (``batch(48, 4, seed=1)``)
and two tests that name the same batch get the same arrays. Expected values never come from
here: they come from eager focal/ (:mod:`tests.service.reference`) on the same arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from bench.data import Batch
from bench.data import make_batch as benchmark_batch

__all__ = [
    "IGNORE_INDEX",
    "Batch",
    "batch",
    "benchmark_batch",
    "class_weights",
    "extremes",
    "label_batch",
]

IGNORE_INDEX = -100  # the shipped graph's default ignore_index

Seed = int | np.random.Generator


def batch(
    n: int,
    c: int,
    seed: Seed = 0,
    *,
    spatial: tuple[int, ...] = (),
    scale: float = 2.0,
    dtype: npt.DTypeLike = np.float32,
    ignore: int = 0,
    ignore_fraction: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
    """Logits ``(n, c, *spatial)`` and int64 labels ``(n, *spatial)``, some rows ignored.

    Logits are standard normal times ``scale``, in ``dtype``; labels uniform over the ``c``
    classes. The first ``ignore`` labels, then each with probability ``ignore_fraction``, are
    ``ignore_index``.

    Args:
        n: Rows (the batch dimension).
        c: Classes.
        seed: A seed, or a generator to draw from (and to keep drawing from afterwards, e.g.
            :func:`class_weights`).
        spatial: Segmentation-shaped extra dimensions ``d1, ...``.
        scale: The logits' standard deviation.
        dtype: The logits' dtype.
        ignore: How many leading labels are ``ignore_index``.
        ignore_fraction: The chance that any label is ``ignore_index``.
        ignore_index: The label of ignored rows.
    """
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, c, *spatial)) * scale).astype(dtype)
    labels = rng.integers(0, c, size=(n, *spatial))
    labels.reshape(-1)[:ignore] = ignore_index
    if ignore_fraction:
        labels[rng.random(labels.shape) < ignore_fraction] = ignore_index
    return logits, labels


def class_weights(rng: np.random.Generator, c: int) -> npt.NDArray[np.float32]:
    """A per-class alpha ``(c,)`` in [0.5, 1.5)."""
    return (rng.random(c) + 0.5).astype(np.float32)


def extremes(dtype: npt.DTypeLike, shape: tuple[int, ...] = (3, 4)) -> npt.NDArray[Any]:
    """Values that exercise ``dtype``: its extremes for integers, -0, tiny and max for floats."""
    kind: np.dtype[Any] = np.dtype(dtype)
    rng = np.random.default_rng(0)
    if kind.kind == "b":
        return rng.random(shape) < 0.5
    if kind.kind in "iu":
        info = np.iinfo(kind)
        values = rng.integers(info.min, info.max, size=shape, dtype=kind, endpoint=True)
        values.flat[:2] = [info.min, info.max]
        return values
    floats = (rng.standard_normal(shape) * 1e3).astype(kind)
    floats.flat[:3] = [-0.0, np.finfo(kind).tiny, np.finfo(kind).max]
    return floats


def label_batch(
    n: int,
    labels: int,
    seed: Seed = 0,
    *,
    scale: float = 2.0,
    ignore_fraction: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Multi-label logits ``(n, labels)`` and int64 targets of the same shape, in {0, 1}.

    A target is 1 with probability ``sigmoid(logit)``, so that scores carry signal; each is
    ``ignore_index`` with probability ``ignore_fraction``.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    logits = (rng.standard_normal((n, labels)) * scale).astype(np.float32)
    targets = (rng.random((n, labels)) < 1 / (1 + np.exp(-logits))).astype(np.int64)
    targets[rng.random((n, labels)) < ignore_fraction] = ignore_index
    return logits, targets
