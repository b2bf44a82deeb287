"""glibc's allocator, set so that resident memory follows what requests hold.

By default glibc keeps one arena per thread (up to 8 per core) and raises its mmap threshold
to the largest block freed so far (up to 32 MiB): blocks of a finished request then stay in
whichever thread's heap held them, and resident memory drifts above the memory budget under
concurrent large requests. ``serve`` therefore sets, before any worker thread starts:

- ``M_ARENA_MAX = 2``: every thread shares two arenas;
- ``M_MMAP_THRESHOLD = 512 KiB``, fixed: every larger block (a large body, a large batch's
  arrays and C x C tables) is its own mapping, returned to the system when freed (and grown in
  place by ``mremap``); smaller blocks come back from the heap;
- ``M_TRIM_THRESHOLD = 1 MiB``: free memory at the top of a heap is returned soon.

Measured with 16 clients sending 40 MB npz bodies against a 306 MiB budget: peak resident
memory 617 MiB without these settings, 383 MiB with them (threshold 128 KiB then). The
threshold is 512 KiB, not 128 KiB, because uvicorn hands a body over in chunks of up to
256 KiB, copied three times on the way: as mappings, each copy was faulted in page by page,
and a 4 MB v2 request cost 2,400-5,300 minor faults (about 4 us each here) where it now costs
about 1,200, most of them its body's (and 230 with the body's buffer kept:
:mod:`focal_eval.service.http.buffers`). It is not 1 MiB (6 faults): then a batch's chunked
work stays in the heap too, and peak memory over a 500,000 x 2 npz body rose from 3.7 to 4.1
times the body (``python -m bench --only memory``). The heap keeps its high-water mark of
blocks under 512 KiB (freed ones are reused, not returned while a live block sits above
them); every such block of a request is counted in its reservation, so that mark stays within
the budget. Elsewhere (musl, macOS) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
SERVER_MMAP_THRESHOLD = 2**19  # above uvicorn's receive chunks (256 KiB, copied 3 times)
STREAM_TRIM_THRESHOLD = 2**30


def bound_allocator() -> bool:
    """The server's settings: two arenas, a 512 KiB mmap threshold, prompt trimming.

    Returns:
        False where there is no glibc.
    """
    return _mallopt(
        (M_ARENA_MAX, 2),
        (M_MMAP_THRESHOLD, SERVER_MMAP_THRESHOLD),
        (M_TRIM_THRESHOLD, 2 * SERVER_MMAP_THRESHOLD),
    )


def stream_allocator() -> bool:
    """``focal evaluate``'s settings for a stream of equal blocks: one heap, reused, never mapped.

    One arena, no block its own mapping (``M_MMAP_MAX = 0``), and the heap trimmed only past
    1 GiB free: each block takes the memory the one before it freed, so nothing is faulted in
    again, and the heap holds its peak (one block's work, flat in the dataset's size) until the
    command exits. 2,000,000 x 100 Parquet rows, read a row group at a time, paired runs: 2.6 s
    instead of 3.0 s with two arenas and a 32 MiB mmap threshold, 81,000 page faults instead
    of 240,000, system time 0.33 s instead of 0.68, peak RSS 393 instead of 510 MiB.

    Returns:
        False where there is no glibc.
    """
    return _mallopt((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, STREAM_TRIM_THRESHOLD))


def _mallopt(*settings: tuple[int, int]) -> bool:
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        logger.info("no glibc mallopt here; the allocator keeps its defaults")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)
