"""Parity: every runtime's outputs against eager PyTorch on a sweep of shapes and extremes.

Counts (integer outputs) must be equal; floating outputs must satisfy
``|x - ref| <= atol + rtol * |ref|`` with NaN exactly where the reference has NaN.

One exception, by necessity: a sample whose confidence lies within float32 rounding of a
calibration-bin edge may fall on either side in different runtimes (their ``exp`` differ in
the last bit), so the bin outputs and the ECE get a slack of the samples within
:data:`EDGE_WIDTH` of an edge: usually none, so usually exact.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

ATOL = 1e-5
RTOL = 1e-4
EDGE_WIDTH = 1e-5

Inputs = tuple[torch.Tensor, ...]
Runner = Callable[[Inputs], Sequence[np.ndarray]]


@dataclass(frozen=True)
class Case:
    """One batch of the sweep."""

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


def sweep(
    ns: Sequence[int], cs: Sequence[int], max_elements: int = 10**8, seed: int = 0
) -> list[Case]:
    """Every (N, C) pair with gamma, alpha, ignore fraction and scale cycled through.

    The cycles have co-prime lengths (5, 2, 3, 3 with offsets), so each value meets many
    shapes; equal rows are added for each C.
    """
    gammas = (0.0, 0.5, 1.0, 2.0, 5.0)
    ignores = (0.0, 0.3, 1.0)
    scales = (1.0, 30.0, 1e4)
    cases = []
    for i, (n, c) in enumerate(itertools.product(ns, cs)):
        if n * c > max_elements:
            continue
        cases.append(
            Case(
                n,
                c,
                gammas[i % 5],
                bool(i % 2),
                ignores[(i // 2) % 3],
                scales[(i + i // 3) % 3],
                seed=seed,
            )
        )
    cases += [Case(min(ns[-1], 257), c, 2.0, False, 0.0, 3.0, equal_rows=True) for c in cs]
    return cases


def builtin_cases() -> list[Case]:
    """The sweep ``focal export`` checks every artifact on (a few seconds)."""
    return sweep(ns=(1, 7, 4096), cs=(2, 3, 10, 100, 1000), max_elements=4096 * 100)


@dataclass(frozen=True)
class Parity:
    """Worst errors of one runtime against the reference over a sweep."""

    cases: int
    max_abs_error: float
    max_rel_error: float
    count_mismatches: int
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """No count differs and every float is within tolerance."""
        return not self.failures

    def as_dict(self) -> dict[str, object]:
        """JSON-ready figures for the manifest (a non-finite error is ``None``; see failures)."""
        return {
            "cases": self.cases,
            "max_abs_error": _finite_or_none(self.max_abs_error),
            "max_rel_error": _finite_or_none(self.max_rel_error),
            "count_mismatches": self.count_mismatches,
            "atol": ATOL,
            "rtol": RTOL,
            "passed": self.passed,
            "failures": list(self.failures),
        }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def measure(
    candidate: Runner,
    reference: Runner,
    cases: Sequence[Case],
    output_names: Sequence[str],
    make_inputs: Callable[[Case], Inputs] = Case.inputs,
) -> Parity:
    """Run both on every case and collect the worst differences, output by output."""
    worst_abs = worst_rel = 0.0
    mismatches = 0
    failures: list[str] = []
    for case in cases:
        inputs = make_inputs(case)
        got, want = candidate(inputs), reference(inputs)
        slack = calibration_slack(dict(zip(output_names, want, strict=True)))
        for name, x, ref in zip(output_names, got, want, strict=True):
            count_slack, extra_atol = slack.get(name, (0, 0.0))
            problem, abs_err, rel_err, wrong = compare(
                np.asarray(x), np.asarray(ref), count_slack, extra_atol
            )
            worst_abs, worst_rel = max(worst_abs, abs_err), max(worst_rel, rel_err)
            mismatches += wrong
            if problem:
                failures.append(f"{case.name}: {name}: {problem}")
    return Parity(len(cases), worst_abs, worst_rel, mismatches, tuple(failures))


def calibration_slack(reference: dict[str, np.ndarray]) -> dict[str, tuple[int, float]]:
    """``(count slack, extra atol)`` for the bin outputs, from samples near a bin edge.

    Each of the ``k`` samples near an edge may move one bin: counts change by at most ``2k``
    in total, a bin's confidence sum by at most ``k``, the ECE by at most ``2k / n``.
    """
    if "confidence" not in reference or "bin_count" not in reference:
        return {}
    num_bins = len(reference["bin_count"])
    scaled = reference["confidence"].astype(np.float64) * num_bins
    edge = np.round(scaled)
    interior = (edge > 0) & (edge < num_bins)  # 0 and 1 bound the first and last bins
    near = int(np.count_nonzero(interior & (np.abs(scaled - edge) < EDGE_WIDTH)))
    valid = max(int(reference["bin_count"].sum()), 1)
    return {
        "bin_count": (2 * near, 0.0),
        "bin_correct": (2 * near, 0.0),
        "bin_confidence_sum": (0, float(near)),
        "expected_calibration_error": (0, 2.0 * near / valid),
    }


def compare(
    x: np.ndarray, ref: np.ndarray, count_slack: int = 0, extra_atol: float = 0.0
) -> tuple[str, float, float, int]:
    """``(problem or "", max abs error, max rel error, mismatched counts)`` of one output.

    ``count_slack`` is the total absolute count difference allowed; ``extra_atol`` widens the
    float tolerance.
    """
    if x.shape != ref.shape:
        return f"shape {list(x.shape)} != {list(ref.shape)}", 0.0, 0.0, 0
    if not np.issubdtype(ref.dtype, np.floating):
        wrong = int(np.count_nonzero(x != ref))
        moved = int(np.abs(x.astype(np.int64) - ref.astype(np.int64)).sum())
        return (f"{wrong} counts differ" if moved > count_slack else ""), 0.0, 0.0, wrong
    x64, ref64 = x.astype(np.float64), ref.astype(np.float64)
    if not np.array_equal(np.isnan(x64), np.isnan(ref64)):
        return "NaN in different places", float("inf"), float("inf"), 0
    finite = np.isfinite(ref64) & np.isfinite(x64)
    if not np.array_equal(x64[~finite], ref64[~finite], equal_nan=True):
        return "infinities differ", float("inf"), float("inf"), 0
    diff = np.abs(x64[finite] - ref64[finite])
    scale = np.abs(ref64[finite])
    abs_err = float(diff.max(initial=0.0))
    # relative error where rtol governs the tolerance (|ref| > atol / rtol)
    governed = RTOL * scale > ATOL
    rel_err = float((diff[governed] / scale[governed]).max(initial=0.0))
    over = int(np.count_nonzero(diff > ATOL + extra_atol + RTOL * scale))
    problem = f"{over} values out of tolerance (max abs {abs_err:.3g})" if over else ""
    return problem, abs_err, rel_err, 0
