"""Where the memory budget comes from: the container's limit, less what the process holds.

    budget = limit - process - monitor - connections - buffers - margin

- limit: ``memory.max`` (cgroup v2) or ``memory.limit_in_bytes`` (cgroup v1); without a
  limit, half of the machine's RAM.
- process: the server's resident memory once its graphs are loaded and warmed up.
- monitor: the most the monitor can hold
  (:meth:`focal_eval.service.monitoring.monitor.Monitor.max_bytes`).
- connections: ``FOCAL_MAX_CONNECTIONS`` times what one connection may buffer.
- buffers: ``FOCAL_BODY_BUFFER_BYTES``, the finished bodies' buffers kept for reuse
  (:mod:`focal_eval.service.http.buffers`).
- margin: 10% of the limit, for allocator slack and Python's small objects.

``FOCAL_MEMORY_LIMIT`` replaces the whole calculation (with a warning when it does not fit
in the container's limit beside the rest).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from focal_eval.service.core.settings import Settings
from focal_eval.service.http.connections import MAX_PIPELINED
from focal_eval.service.memory.budget import mib
from focal_eval.service.monitoring.monitor import Monitor

logger = logging.getLogger(__name__)

CGROUP_LIMIT_FILES = (
    ("/sys/fs/cgroup/memory.max", "cgroup v2"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "cgroup v1"),
)
UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a number near 2**63
MARGIN = 0.10
SMALLEST_BUDGET = 16 * 2**20
# What one connection may hold outside any request's reservation: body bytes no route reads
# yet (uvicorn pauses reading past 64 KiB, plus the parser's copy of one 256 KiB read), the
# transport's write buffer (64 KiB high-water mark) with one small response sent whole
# (64 KiB), and the protocol's own objects; plus the heads of its requests
# (FOCAL_MAX_HEADER_BYTES each).
CONNECTION_BUFFERS = (64 + 256 + 64 + 64 + 32) * 1024


@dataclass(frozen=True)
class DerivedBudget:
    """The budget for request work and how it was derived (printed at start-up)."""

    bytes: int
    origin: str


def container_limit() -> tuple[int, str] | None:
    """The cgroup memory limit of this process and which file said so; None if unlimited."""
    for path, version in CGROUP_LIMIT_FILES:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text == "max" or not text.isdigit() or int(text) >= UNLIMITED:
            return None
        return int(text), f"the container's memory limit ({version})"
    return None


def physical_memory() -> int:
    """The machine's RAM in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resident_bytes() -> int:
    """This process's resident set size now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def connection_bytes(max_connections: int, max_header_bytes: int) -> int:
    """The most that open connections buffer outside request reservations.

    Each holds its buffers, and the heads of its request and of the requests pipelined
    behind it.
    """
    return max_connections * ((1 + MAX_PIPELINED) * max_header_bytes + CONNECTION_BUFFERS)


def derive_budget(
    configured: int | None, process: int, monitor: int, connections: int, buffers: int
) -> DerivedBudget:
    """``FOCAL_MEMORY_LIMIT`` if set, else the limit less what the rest may hold (above).

    Raises:
        ValueError: the limit leaves less than 16 MiB for request work.
    """
    found = container_limit()
    held = (
        f"process {mib(process)} - monitor at most {mib(monitor)} - connections at most"
        f" {mib(connections)} - body buffers at most {mib(buffers)}"
    )
    if configured is not None:
        if found is not None and configured + process + monitor + connections + buffers > found[0]:
            logger.warning(
                "FOCAL_MEMORY_LIMIT %s, with the rest (%s), is more than %s %s: requests may"
                " get the server killed",
                mib(configured),
                held,
                found[1],
                mib(found[0]),
            )
        return DerivedBudget(configured, f"FOCAL_MEMORY_LIMIT ({mib(configured)})")
    limit, source = found if found else (physical_memory() // 2, "half of the machine's RAM")
    margin = int(limit * MARGIN)
    budget = limit - process - monitor - connections - buffers - margin
    origin = f"{source} {mib(limit)} - {held} - margin {mib(margin)}"
    if budget < SMALLEST_BUDGET:
        raise ValueError(
            f"FOCAL_MEMORY_LIMIT: {origin} leaves {mib(budget)} for requests (at least"
            f" {mib(SMALLEST_BUDGET)} needed): raise the memory limit, or lower"
            " FOCAL_MONITOR_MAX_CLASSES, FOCAL_MAX_CONNECTIONS, FOCAL_WINDOW_BUCKETS or"
            " FOCAL_BODY_BUFFER_BYTES"
        )
    return DerivedBudget(budget, origin)


def request_budget(settings: Settings, statistics_bytes: Callable[[int], int]) -> DerivedBudget:
    """The budget for ``settings``, measured now (call it once the graphs are warmed up).

    Raises:
        ValueError: the limit leaves less than 16 MiB for request work.
    """
    monitor = Monitor.max_bytes(
        len(settings.monitor_sources),
        settings.monitor_max_classes,
        settings.window_buckets,
        statistics_bytes,
    )
    connections = connection_bytes(settings.max_connections, settings.max_header_bytes)
    return derive_budget(
        settings.memory_limit, resident_bytes(), monitor, connections, settings.body_buffer_bytes
    )
