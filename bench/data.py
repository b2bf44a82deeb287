"""Synthetic batches: logits that favour the true class, as a fairly good classifier's do."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

GAMMA = 2.0
IGNORE_INDEX = -100  # the shipped graph's default


@dataclass(frozen=True)
class Batch:
    """Logits ``(N, C)`` float32 and labels ``(N,)`` int64, plus all-ones alpha."""

    logits: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, C)``."""
        n, c = self.logits.shape
        return int(n), int(c)

    @property
    def alpha(self) -> npt.NDArray[np.float32]:
        """Per-class weights, all ones (no weighting), as the service defaults."""
        return np.ones(self.shape[1], dtype=np.float32)


def make_batch(n: int, c: int, seed: int = 0) -> Batch:
    """A reproducible batch: standard-normal logits plus 2 on the true class (~50-90% right)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, size=n, dtype=np.int64)
    logits = rng.standard_normal((n, c), dtype=np.float32)
    logits[np.arange(n), labels] += 2.0
    return Batch(logits, labels)


def case_name(n: int, c: int) -> str:
    """``"N=100000 C=10"``."""
    return f"N={n} C={c}"
