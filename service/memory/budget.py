"""The memory budget that request work is admitted against.

Every request holds a :class:`Reservation`: the bytes its work needs at its current stage,
grown as the body arrives and resized as the work becomes known (decoded size, then N and C),
then held by the response until its last byte is written. A reservation that would take the
budget past its limit is refused: 503 with ``Retry-After`` while other requests hold the
difference, 413 when it exceeds the whole budget and so could never fit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from focal_eval.service.core.errors import RequestError

MIB = 2**20


def mib(nbytes: int) -> str:
    """Bytes as MiB for messages, e.g. ``"12.5 MiB"``."""
    return f"{nbytes / MIB:.1f} MiB"


class MemoryBudget:
    """A byte limit shared by every request's reservation; thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._reserved = 0
        self._lock = threading.Lock()

    @property
    def reserved(self) -> int:
        """Bytes currently reserved by requests and unsent responses."""
        return self._reserved

    def refuse_if_never_fits(self, nbytes: int, what: str) -> None:
        """Raise the 413 for work that needs more than the whole budget.

        Raises:
            RequestError: 413 naming ``what``.
        """
        if nbytes > self.limit:
            raise RequestError(
                413,
                f"{what}: needs about {mib(nbytes)} of memory, more than the server's budget"
                f" for request work ({mib(self.limit)}, FOCAL_MEMORY_LIMIT)",
            )

    def refuse_unless_free(self, nbytes: int, what: str) -> None:
        """Raise the 503 for work that does not fit in what is free now (reserving nothing).

        Raises:
            RequestError: 503 with ``Retry-After``, naming ``what``.
        """
        in_use = self._reserved
        if in_use + nbytes > self.limit:
            raise _busy(what, nbytes, in_use, self.limit)

    def reservation(self, on_release: Callable[[int], None] | None = None) -> Reservation:
        """A new, empty reservation; ``on_release(peak)`` is called once it is released."""
        return Reservation(self, on_release)

    def _change(self, delta: int, total: int, what: str) -> None:
        self.refuse_if_never_fits(total, what)
        with self._lock:
            if delta > 0 and self._reserved + delta > self.limit:
                in_use = self._reserved
            else:
                self._reserved += delta
                return
        raise _busy(what, total, in_use, self.limit)


def _busy(what: str, nbytes: int, in_use: int, limit: int) -> RequestError:
    return RequestError(
        503,
        f"server: {what} needs about {mib(nbytes)} of memory and {mib(in_use)} of the"
        f" {mib(limit)} budget is in use (FOCAL_MEMORY_LIMIT); retry shortly",
        headers={"Retry-After": "1"},
    )


class Reservation:
    """The bytes one request holds against a :class:`MemoryBudget`.

    ``peak`` is the most it held, for telemetry and for tests of the memory model.
    """

    def __init__(
        self, budget: MemoryBudget, on_release: Callable[[int], None] | None = None
    ) -> None:
        self._budget = budget
        self._on_release = on_release
        self.nbytes = 0
        self.peak = 0
        self._released = False

    def resize(self, nbytes: int, what: str) -> None:
        """Hold exactly ``nbytes`` from now on (more or fewer than before).

        Raises:
            RequestError: 413 when ``nbytes`` exceeds the whole budget, 503 when it exceeds
                what is free now; the reservation is then unchanged.
        """
        if self._released:
            raise RuntimeError("resize after release")
        self._budget._change(nbytes - self.nbytes, nbytes, what)
        self.nbytes = nbytes
        self.peak = max(self.peak, nbytes)

    def check(self, more: int, what: str) -> None:
        """Refuse (413 / 503) what growing by ``more`` bytes would be refused, reserving nothing."""
        self._budget.refuse_if_never_fits(self.nbytes + more, what)
        self._budget.refuse_unless_free(more, what)

    def grow(self, nbytes: int, what: str) -> None:
        """Hold ``nbytes`` more (see :meth:`resize`)."""
        self.resize(self.nbytes + nbytes, what)

    def release(self) -> None:
        """Give every byte back; later calls do nothing."""
        if not self._released:
            self._budget._change(-self.nbytes, 0, "release")
            self.nbytes = 0
            self._released = True
            if self._on_release is not None:
                self._on_release(self.peak)
