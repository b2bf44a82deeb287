"""Bounded concurrency: at most ``limit`` scoring requests at once, and no queue.

A request over the limit is answered 503 with ``Retry-After`` at once rather than waiting in an
unbounded queue; admitted requests do their blocking work (parsing, the graph, encoding) in
worker threads, so the event loop keeps answering health checks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

from focal_eval.service.core.errors import RequestError

T = TypeVar("T")


class SaturatedError(RequestError):
    """503: every slot is taken."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            503,
            f"server: {limit} requests already in flight (FOCAL_MAX_IN_FLIGHT); retry shortly",
            headers={"Retry-After": "1"},
        )


class Gate:
    """Admission control plus the worker-thread pool for admitted requests."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._threads = CapacityLimiter(limit)

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold one slot for the duration, or raise :class:`SaturatedError` at once."""
        if self.in_flight >= self.limit:
            raise SaturatedError(self.limit)
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """Run blocking work in a worker thread."""
        return await anyio.to_thread.run_sync(function, *args, limiter=self._threads)
