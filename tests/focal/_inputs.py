"""Seeded inputs shared by the multi-label and ranking tests (numpy draws, float32 logits)."""

from __future__ import annotations

import numpy as np
import torch

IGNORE = -100


def multilabel_batch(
    seed: int,
    n: int,
    num_labels: int,
    scale: float = 2.0,
    ignore_fraction: float = 0.2,
    positive_fraction: float = 0.3,
    signal: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, L)`` float32 logits and int64 targets in {0, 1, IGNORE}; positives score ``signal``
    higher on average, so that AUROC is neither trivial nor 0.5."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, num_labels)) < positive_fraction).astype(np.int64)
    noise = rng.standard_normal((n, num_labels)) * scale
    logits = (noise + signal * (2 * targets - 1)).astype(np.float32)
    targets[rng.random((n, num_labels)) < ignore_fraction] = IGNORE
    return torch.from_numpy(logits), torch.from_numpy(targets)


def multiclass_batch(
    seed: int, n: int, c: int, scale: float = 2.0, ignore_fraction: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, C)`` float32 logits (the label's one raised by 1) and int64 labels or IGNORE."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    logits = rng.standard_normal((n, c)) * scale
    logits[np.arange(n), labels] += 1.0
    labels[rng.random(n) < ignore_fraction] = IGNORE
    return torch.from_numpy(logits.astype(np.float32)), torch.from_numpy(labels)
