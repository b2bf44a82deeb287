"""Parity: every runtime's outputs against eager PyTorch on a sweep of shapes and extremes.

Counts (integer outputs) must be equal; floating outputs must satisfy
``|x - ref| <= atol + rtol * |ref|`` with NaN exactly where the reference has NaN.

One exception, by necessity: a sample whose probability lies within float32 rounding of a
calibration-bin edge, a score-bin edge or the decision threshold may fall on either side in
different runtimes (their ``exp`` differ in the last bit), so the outputs it reaches get the
slack that :mod:`focal_eval.export.edges` derives from the number of such samples: usually
none, so usually exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from focal_eval.export.edges import SlackRule, no_slack
from focal_eval.export.sweeps import Case, Inputs, Named

ATOL = 1e-5
RTOL = 1e-4

Runner = Callable[[Inputs], Sequence[np.ndarray]]


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
    cases: Sequence[Named],
    output_names: Sequence[str],
    make_inputs: Callable[[Any], Inputs] = Case.inputs,
    slack: SlackRule = no_slack,
) -> Parity:
    """Run both on every case and collect the worst differences, output by output.

    ``cases`` are anything with a ``name`` that ``make_inputs`` turns into inputs; ``slack``
    gives the looseness each output gets from samples on an edge (see
    :mod:`focal_eval.export.edges`).
    """
    worst_abs = worst_rel = 0.0
    mismatches = 0
    failures: list[str] = []
    for case in cases:
        inputs = make_inputs(case)
        got, want = candidate(inputs), reference(inputs)
        allowed = slack(inputs, dict(zip(output_names, map(np.asarray, want), strict=True)))
        for name, x, ref in zip(output_names, got, want, strict=True):
            count_slack, extra_atol = allowed.get(name, (0, 0.0))
            problem, abs_err, rel_err, wrong = compare(
                np.asarray(x), np.asarray(ref), count_slack, extra_atol
            )
            worst_abs, worst_rel = max(worst_abs, abs_err), max(worst_rel, rel_err)
            mismatches += wrong
            if problem:
                failures.append(f"{case.name}: {name}: {problem}")
    return Parity(len(cases), worst_abs, worst_rel, mismatches, tuple(failures))


def compare(
    x: np.ndarray, ref: np.ndarray, count_slack: int = 0, extra_atol: float | np.ndarray = 0.0
) -> tuple[str, float, float, int]:
    """``(problem or "", max abs error, max rel error, mismatched counts)`` of one output.

    ``count_slack`` is the total absolute count difference allowed; ``extra_atol`` (a scalar,
    or one value per element) widens the float tolerance.
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
    extra = np.broadcast_to(np.asarray(extra_atol, dtype=np.float64), ref64.shape)[finite]
    over = int(np.count_nonzero(diff > ATOL + extra + RTOL * scale))
    problem = f"{over} values out of tolerance (max abs {abs_err:.3g})" if over else ""
    return problem, abs_err, rel_err, 0
