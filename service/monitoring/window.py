"""Windows of additive statistics: the last W samples within T seconds, in a ring of buckets.

A window is a run of buckets, each the sum of consecutive batches. The newest bucket takes
batches until it holds ``ceil(W / K)`` samples or has been open ``T / K`` seconds; then the
next batch opens a new one. The oldest bucket leaves once its newest batch is older than T,
or once the newer buckets alone hold W samples. So the window covers at least the last W
samples seen within T seconds, and at most one bucket more (W / K samples, or the samples of
one larger batch), with its time edge blurred by T / K.

Memory is bounded by the bucket count, never by the traffic: however batches arrive (one row
each, or none valid), a window holds at most ``2 K + 2`` buckets (:func:`max_buckets`): at
most K - 1 full buckets besides the oldest (the newer ones hold fewer than W samples), at
most K + 1 closed by time (they open at least T / K apart within T + T / K), the open one.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Statistics = dict[str, npt.NDArray[Any]]


def add(a: Mapping[str, npt.NDArray[Any]], b: Mapping[str, npt.NDArray[Any]]) -> Statistics:
    """Statistics of the union: elementwise sums, name by name."""
    return {name: a[name] + b[name] for name in a}


def max_buckets(buckets: int) -> int:
    """The most buckets a window of ``buckets`` (K) can hold at once: 2 K + 2."""
    return 2 * buckets + 2


@dataclass
class _Bucket:
    opened: float
    newest: float
    samples: int
    batches: int
    statistics: Statistics


class Window:
    """The statistics of the most recent batches, summed into at most 2 K + 2 buckets."""

    def __init__(
        self,
        max_samples: int,
        max_seconds: float,
        buckets: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_samples = max_samples
        self.max_seconds = max_seconds
        self._bucket_samples = math.ceil(max_samples / buckets)
        self._bucket_seconds = max_seconds / buckets
        self._clock = clock
        self._buckets: deque[_Bucket] = deque()
        self._samples = 0

    @property
    def buckets(self) -> int:
        """Buckets held now."""
        return len(self._buckets)

    def push(self, statistics: Mapping[str, npt.NDArray[Any]], samples: int) -> None:
        """Add a batch's statistics and its count of valid samples (the arrays are copied)."""
        now = self._clock()
        self._evict(now)
        newest = self._buckets[-1] if self._buckets else None
        if (
            newest is None
            or newest.samples >= self._bucket_samples
            or now - newest.opened >= self._bucket_seconds
        ):
            copied = {name: np.array(values, copy=True) for name, values in statistics.items()}
            self._buckets.append(_Bucket(now, now, samples, 1, copied))
        else:
            for name, values in newest.statistics.items():
                np.add(values, statistics[name], out=values)
            newest.newest = now
            newest.samples += samples
            newest.batches += 1
        self._samples += samples
        self._evict(now)

    def total(self) -> tuple[Statistics | None, int, int]:
        """``(summed statistics or None if empty, samples, batches)`` of the window now."""
        self._evict(self._clock())
        if not self._buckets:
            return None, 0, 0
        buckets = iter(self._buckets)
        summed = {name: values.copy() for name, values in next(buckets).statistics.items()}
        batches = self._buckets[0].batches
        for bucket in buckets:
            for name, values in summed.items():
                np.add(values, bucket.statistics[name], out=values)
            batches += bucket.batches
        return summed, self._samples, batches

    def _evict(self, now: float) -> None:
        oldest_allowed = now - self.max_seconds
        while self._buckets and (
            self._buckets[0].newest < oldest_allowed
            or self._samples - self._buckets[0].samples >= self.max_samples
        ):
            self._samples -= self._buckets.popleft().samples
