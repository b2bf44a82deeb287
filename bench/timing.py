"""Interleaved timing: candidates measured in rounds, side by side, compared as paired ratios.

Each round runs every candidate once, in alternating order (A B C, then C B A, ...), so that
two candidates are always measured close together in time and slow drifts of the machine
(another job starting, thermal throttling) hit both alike and cancel in their ratio. The ratio
of A to B is the median over rounds of ``time_A / time_B`` from the same round, which is far
steadier on a shared machine than the ratio of two medians taken minutes apart.

Candidates must not slow each other down: onnxruntime's and OpenMP's worker threads spin for a
while after a call, and on two cores a spinning pool from the previous candidate can make the
next one's first call 10-40x slower. So each sample starts after a garbage collection (the
previous candidates' garbage), a short pause and, for fast candidates, one untimed call: every
candidate is timed as if it ran alone, warm, as it would be for a user sending batch after
batch. The collection comes before that untimed call, not after it: a full collection walks
every object (about 150 ms in the bench's process) and leaves caches and TLBs cold, and the
next one-thread onnxruntime run on a 5,242 x 100 chunk took 2.0-2.4 ms instead of 1.3.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

Candidate = Callable[[], object]


@dataclass(frozen=True)
class Rounds:
    """Per-call seconds of each candidate, one value per round, rounds aligned by index."""

    seconds: dict[str, list[float]]

    def median(self, name: str) -> float:
        """The median per-call time of ``name``, in seconds."""
        return statistics.median(self.seconds[name])

    def ratio(self, numerator: str, denominator: str) -> Ratio:
        """``numerator / denominator``, paired round by round."""
        return paired_ratio(self.seconds[numerator], self.seconds[denominator])

    def excess(self, numerator: str, floor: str, denominator: str) -> Ratio:
        """``(numerator - floor) / denominator``, paired round by round.

        What ``numerator`` adds to a ``floor`` it includes (a request over a client's own
        cost), in units of ``denominator``.
        """
        seconds = self.seconds
        added = [a - b for a, b in zip(seconds[numerator], seconds[floor], strict=True)]
        return paired_ratio(added, seconds[denominator])


@dataclass(frozen=True)
class Ratio:
    """A median of paired ratios, with its interquartile range to show the noise."""

    median: float
    low: float  # 25th percentile
    high: float  # 75th percentile
    pairs: int


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> Ratio:
    """The median of ``numerators[i] / denominators[i]``: pairs measured side by side.

    Example:
        >>> paired_ratio([2.0, 4.0, 3.0], [1.0, 2.0, 1.0]).median
        2.0
    """
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError(
            f"Expected two equally long, non-empty sequences, got {len(numerators)} and"
            f" {len(denominators)} values"
        )
    ratios = sorted(a / b for a, b in zip(numerators, denominators, strict=True))
    return Ratio(
        statistics.median(ratios), _quantile(ratios, 0.25), _quantile(ratios, 0.75), len(ratios)
    )


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values."""
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def calibrate(
    candidate: Candidate, min_sample_s: float, max_loops: int = 10_000
) -> tuple[int, float]:
    """Calls per sample so that one sample lasts at least ``min_sample_s`` (timer resolution).

    Returns:
        The loop count and the seconds per call seen at that count.
    """
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            candidate()
        per_call = (time.perf_counter() - start) / loops
        if per_call * loops >= min_sample_s or loops >= max_loops:
            return loops, per_call
        loops *= 2


def interleave(
    candidates: Mapping[str, Candidate],
    rounds: int,
    *,
    min_rounds: int = 3,
    budget_s: float = float("inf"),
    min_sample_s: float = 0.02,
    warmup: int = 1,
    settle_s: float = 0.005,
    prime_below_s: float = 0.1,
) -> Rounds:
    """Time every candidate once per round, in alternating order, for ``rounds`` rounds.

    Args:
        candidates: Zero-argument callables by name; each does the whole unit of work.
        rounds: The most rounds to run.
        min_rounds: Rounds run whatever the budget.
        budget_s: Stop after the round that crosses this many seconds (after ``min_rounds``).
        min_sample_s: Fast candidates are called in a loop so that each sample lasts at least
            this long; the per-call time is the sample divided by the loop count.
        warmup: Untimed calls of each candidate before calibrating.
        settle_s: Pause before each sample, so that the previous candidate's thread pools
            stop spinning.
        prime_below_s: Candidates faster than this get one untimed call before each sample.

    Returns:
        Per-call seconds by candidate, one value per round.
    """
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    calibrated = {name: calibrate(candidates[name], min_sample_s) for name in names}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    started = time.perf_counter()
    for index in range(rounds):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            loops, per_call = calibrated[name]
            gc.collect()  # the last candidate's garbage, before the prime warms this one
            time.sleep(settle_s)
            if per_call < prime_below_s:
                candidates[name]()
            seconds[name].append(_sample(candidates[name], loops))
        elapsed = time.perf_counter() - started
        if index + 1 >= min_rounds and elapsed > budget_s:
            break
    return Rounds(seconds)


def _sample(candidate: Candidate, loops: int) -> float:
    """Seconds per call over ``loops`` calls."""
    start = time.perf_counter()
    for _ in range(loops):
        candidate()
    return (time.perf_counter() - start) / loops
