"""glibc's allocator, set so that resident memory follows what requests hold.

By default glibc keeps one arena per thread (up to 8 per core) and raises its mmap threshold
to the largest block freed so far (up to 32 MiB): blocks of a finished request then stay in
whichever thread's heap held them, and resident memory drifts above the memory budget under
concurrent large requests. ``serve`` therefore sets, before any worker thread starts:

- ``M_ARENA_MAX = 2``: every thread shares two arenas;
- ``M_MMAP_THRESHOLD = 128 KiB``, fixed: every larger block is its own mapping, returned to
  the system when freed (and grown in place by ``mremap``);
- ``M_TRIM_THRESHOLD = 1 MiB``: free memory at the top of a heap is returned soon.

Measured with 16 clients sending 40 MB npz bodies against a 306 MiB budget: peak resident
memory 617 MiB without these settings, 383 MiB with them. Elsewhere (musl, macOS) nothing is
changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
SETTINGS = ((M_ARENA_MAX, 2), (M_MMAP_THRESHOLD, 128 * 1024), (M_TRIM_THRESHOLD, 2**20))


def bound_allocator() -> bool:
    """Apply ``SETTINGS`` through glibc's ``mallopt``; False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        logger.info("no glibc mallopt here; the allocator keeps its defaults")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return all(mallopt(parameter, value) == 1 for parameter, value in SETTINGS)
