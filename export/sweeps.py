"""The batches every artifact is checked on: multi-class, multi-label and sigmoid sweeps.

A case is a frozen description (shape, parameters, extremes) with a ``name`` for reports and
``inputs()`` giving the graph's inputs, drawn from a seeded generator: the same case gives the
same tensors in every process.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

Inputs = tuple[torch.Tensor, ...]

GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)
IGNORE_FRACTIONS = (0.0, 0.3, 1.0)
SCALES = (1.0, 30.0, 1e4)
SIGMOID_ALPHAS = (0.25, -1.0)  # torchvision's default; negative: the weighting off
THRESHOLDS = (0.5, 0.3, 0.9)
POSITIVE_RATE = 0.3  # of "mixed" multi-label targets


class Named(Protocol):
    """A case as reports know it: by its name."""

    @property
    def name(self) -> str:
        """A short human-readable label."""


@dataclass(frozen=True)
class Case:
    """One multi-class batch of the sweep."""

    n: int
    c: int
    gamma: float
    weighted: bool
    ignore_fraction: float
    scale: float
    equal_rows: bool = False
    seed: int = 0

    @property
    def name(self) -> str:
        """A short human-readable label."""
        alpha = "vector" if self.weighted else "ones"
        rows = " equal-rows" if self.equal_rows else ""
        return (
            f"N={self.n} C={self.c} gamma={self.gamma} alpha={alpha}"
            f" ignore={self.ignore_fraction} scale={self.scale:g}{rows}"
        )

    def inputs(self, ignore_index: int = -100) -> Inputs:
        """``(logits, labels, alpha, gamma, ignore_index)`` for the evaluation step."""
        rng = np.random.default_rng(self.seed + 7919 * self.n + self.c)
        if self.equal_rows:
            logits = np.full((self.n, self.c), self.scale, dtype=np.float32)
        else:
            logits = (rng.standard_normal((self.n, self.c)) * self.scale).astype(np.float32)
        labels = rng.integers(0, self.c, self.n)
        labels[rng.random(self.n) < self.ignore_fraction] = ignore_index
        alpha = rng.random(self.c) + 0.1 if self.weighted else np.ones(self.c)
        return (
            torch.from_numpy(logits),
            torch.from_numpy(labels),
            torch.from_numpy(alpha.astype(np.float32)),
            torch.tensor(self.gamma),
            torch.tensor(ignore_index),
        )


def ranking_inputs(case: Case) -> Inputs:
    """``(logits, labels, ignore_index)`` of a multi-class case, for the ranking step."""
    logits, labels, _, _, ignore_index = case.inputs()
    return logits, labels, ignore_index


@dataclass(frozen=True)
class LabelCase:
    """One multi-label batch: ``targets`` "mixed" (30% positive), "positive" or "negative"."""

    n: int
    num_labels: int
    gamma: float
    alpha: float
    threshold: float
    ignore_fraction: float
    scale: float
    targets: str = "mixed"
    seed: int = 0

    @property
    def name(self) -> str:
        """A short human-readable label."""
        targets = "" if self.targets == "mixed" else f" all-{self.targets}"
        return (
            f"N={self.n} L={self.num_labels} gamma={self.gamma} alpha={self.alpha}"
            f" threshold={self.threshold} ignore={self.ignore_fraction}"
            f" scale={self.scale:g}{targets}"
        )

    def inputs(self, ignore_index: int = -100) -> Inputs:
        """``(logits, targets, alpha, gamma, threshold, ignore_index)``: the multi-label step's."""
        rng = np.random.default_rng(self.seed + 7919 * self.n + self.num_labels)
        shape = (self.n, self.num_labels)
        logits = (rng.standard_normal(shape) * self.scale).astype(np.float32)
        if self.targets == "mixed":
            targets = (rng.random(shape) < POSITIVE_RATE).astype(np.int64)
        else:
            targets = np.full(shape, int(self.targets == "positive"), dtype=np.int64)
        targets[rng.random(shape) < self.ignore_fraction] = ignore_index
        return (
            torch.from_numpy(logits),
            torch.from_numpy(targets),
            torch.tensor(self.alpha),
            torch.tensor(self.gamma),
            torch.tensor(self.threshold),
            torch.tensor(ignore_index),
        )


def sweep(
    ns: Sequence[int], cs: Sequence[int], max_elements: int = 10**8, seed: int = 0
) -> list[Case]:
    """Every (N, C) pair with gamma, alpha, ignore fraction and scale cycled through.

    The cycles have co-prime lengths (5, 2, 3, 3 with offsets), so each value meets many
    shapes; equal rows are added for each C.
    """
    cases = []
    for i, (n, c) in enumerate(itertools.product(ns, cs)):
        if n * c > max_elements:
            continue
        cases.append(
            Case(
                n,
                c,
                GAMMAS[i % 5],
                bool(i % 2),
                IGNORE_FRACTIONS[(i // 2) % 3],
                SCALES[(i + i // 3) % 3],
                seed=seed,
            )
        )
    cases += [Case(min(ns[-1], 257), c, 2.0, False, 0.0, 3.0, equal_rows=True) for c in cs]
    return cases


def label_sweep(
    ns: Sequence[int], ls: Sequence[int], max_elements: int = 10**8, seed: int = 0
) -> list[LabelCase]:
    """Every (N, L) pair with gamma, alpha, threshold, ignore fraction and scale cycled.

    As :func:`sweep` (threshold on its own cycle); all-positive and all-negative targets are
    added for each L.
    """
    cases = []
    for i, (n, num_labels) in enumerate(itertools.product(ns, ls)):
        if n * num_labels > max_elements:
            continue
        cases.append(
            LabelCase(
                n,
                num_labels,
                GAMMAS[i % 5],
                SIGMOID_ALPHAS[i % 2],
                THRESHOLDS[(i // 3 + i) % 3],
                IGNORE_FRACTIONS[(i // 2) % 3],
                SCALES[(i + i // 3) % 3],
                seed=seed,
            )
        )
    n = min(ns[-1], 257)
    cases += [
        LabelCase(n, num_labels, 2.0, 0.25, 0.5, ignore, 3.0, targets=targets)
        for num_labels in ls
        for targets, ignore in (("positive", 0.0), ("negative", 0.3))
    ]
    return cases


def builtin_cases() -> list[Case]:
    """The multi-class sweep ``focal export`` checks its artifacts on (a few seconds)."""
    return sweep(ns=(1, 7, 4096), cs=(2, 3, 10, 100, 1000), max_elements=4096 * 100)


def builtin_label_cases() -> list[LabelCase]:
    """The multi-label sweep ``focal export`` checks its artifacts on (a few seconds)."""
    return label_sweep(ns=(1, 7, 4096), ls=(1, 2, 10, 100, 1000), max_elements=4096 * 100)


def sigmoid_cases() -> list[Case]:
    """Binary / multi-label batches up to |x| = 1e4, where log(sigmoid) exports give NaN."""
    return [Case(n, k, 2.0, False, 0.0, scale) for n, k in ((1, 1), (64, 5)) for scale in SCALES]


def sigmoid_inputs(case: Case) -> Inputs:
    """``(logits, targets)`` with hard 0/1 targets."""
    generator = torch.Generator().manual_seed(case.n * case.c)
    logits = torch.randn(case.n, case.c, generator=generator) * case.scale
    targets = (torch.rand(case.n, case.c, generator=generator) < 0.3).float()
    return logits, targets
