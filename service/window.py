"""Windows of additive statistics: the last W samples or T seconds, at batch granularity."""

from __future__ import annotations

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


@dataclass(frozen=True)
class _Entry:
    time: float
    samples: int
    statistics: Statistics


class Window:
    """The most recent batches, kept whole.

    A batch leaves when it is older than ``max_seconds``, or when the newer batches alone
    hold at least ``max_samples`` samples: the window covers at least the last ``max_samples``
    samples seen within ``max_seconds`` (more by at most its oldest batch).
    """

    def __init__(
        self, max_samples: int, max_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_samples = max_samples
        self.max_seconds = max_seconds
        self._clock = clock
        self._entries: deque[_Entry] = deque()
        self._samples = 0

    def push(self, statistics: Mapping[str, npt.NDArray[Any]], samples: int) -> None:
        """Add a batch's statistics (copied) and its count of valid samples."""
        copied = {name: np.array(values, copy=True) for name, values in statistics.items()}
        self._entries.append(_Entry(self._clock(), samples, copied))
        self._samples += samples
        self._evict()

    def total(self) -> tuple[Statistics | None, int, int]:
        """``(summed statistics or None if empty, samples, batches)`` of the window now."""
        self._evict()
        if not self._entries:
            return None, 0, 0
        entries = iter(self._entries)
        summed = dict(next(entries).statistics)
        for entry in entries:
            summed = add(summed, entry.statistics)
        return summed, self._samples, len(self._entries)

    def clear(self) -> None:
        """Forget every batch."""
        self._entries.clear()
        self._samples = 0

    def _evict(self) -> None:
        oldest_allowed = self._clock() - self.max_seconds
        while self._entries and (
            self._entries[0].time < oldest_allowed
            or self._samples - self._entries[0].samples >= self.max_samples
        ):
            self._samples -= self._entries.popleft().samples
