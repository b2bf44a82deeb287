"""A large batch scored chunk by chunk: per-sample values put in place, statistics summed.

A chunk is a run of a graph on a slice of the batch's rows (``run(rows)``); its statistics
are additive, so a batch's are the sum of its chunks'. :func:`in_turn` runs the chunks one
after another in the caller's thread. :func:`side_by_side` gives each of a pool's workers
one contiguous share of the chunks: a worker runs its share in order, puts the per-sample
values into the batch's arrays (its own rows) and sums its statistics; the caller adds the
shares' sums in share order. So the workers never wait for the caller between chunks, and
the sums are added in the same order whatever the timing: the same batch gives the same
bits for a given number of workers. At most one chunk per worker is running, and one set
of sums per worker is alive.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np
import numpy.typing as npt

Outputs = dict[str, npt.NDArray[Any]]
Run = Callable[[slice], Outputs]
KEPT_GROUPS = ("per_sample", "statistics")  # what a chunk gives; metrics come from the sums


def spans(n: int, rows: int, workers: int = 1) -> list[slice]:
    """The chunks of ``n`` rows: at most ``rows`` each.

    For ``workers`` side by side, as many chunks as a multiple of ``workers``, of equal size
    (give or take a row), so that every share takes as long: ``n = rows + 1`` makes two
    chunks of half the rows each, not one whole chunk and one row.

    Example:
        >>> [(s.start, s.stop) for s in spans(10, 4)]
        [(0, 4), (4, 8), (8, 10)]
        >>> [(s.start, s.stop) for s in spans(10, 4, workers=2)]
        [(0, 2), (2, 5), (5, 7), (7, 10)]
    """
    if workers == 1:
        return [slice(start, min(start + rows, n)) for start in range(0, n, rows)]
    count = math.ceil(math.ceil(n / rows) / workers) * workers
    bounds = [n * i // count for i in range(count + 1)]
    return [slice(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def in_turn(
    run: Run, chunks: Sequence[slice], n: int, groups: Mapping[str, str], in_arena: bool
) -> tuple[Outputs, Outputs]:
    """The chunks run one after another: per-sample values of the ``n`` rows, summed statistics.

    ``groups`` names the outputs to keep, each ``per_sample`` or ``statistics``.
    """
    per_sample: Outputs = {}
    statistics: Outputs = {}
    for rows in chunks:
        part = run(rows)
        _gather(part, rows.start, n, groups, per_sample, statistics, in_arena)
        del part
    return per_sample, statistics


def side_by_side(
    run: Run,
    chunks: Sequence[slice],
    dtypes: Mapping[str, np.dtype[Any]],
    groups: Mapping[str, str],
    pool: ThreadPoolExecutor,
    workers: int,
) -> tuple[Outputs, Outputs]:
    """The chunks in ``workers`` contiguous shares on ``pool``: per-sample values, sums.

    The per-sample arrays (of ``dtypes``) are made here, for the rows of all the chunks, and
    each worker fills its own rows. The chunks' outputs live in an arena that is reused, so
    they are copied out. Every share has ended when this returns or raises: no run goes on
    for a request that has ended.

    Raises:
        Exception: the error of the first share that failed, so of the first failing chunk
            in the order of the rows: a share stops at its first failure, and makes those
            after it stop before their next chunk (their errors would come later in that
            order).
    """
    n = chunks[-1].stop
    per_sample: Outputs = {
        name: np.empty(n, dtypes[name]) for name, group in groups.items() if group == "per_sample"
    }
    count = min(workers, len(chunks))
    cuts = [len(chunks) * i // count for i in range(count + 1)]
    shares = [chunks[a:b] for a, b in itertools.pairwise(cuts)]
    stops = [threading.Event() for _ in shares]

    def score(index: int) -> Outputs:
        statistics: Outputs = {}
        for rows in shares[index]:
            if stops[index].is_set():
                break
            try:
                part = run(rows)
                _gather(part, rows.start, n, groups, per_sample, statistics, in_arena=True)
                del part
            except BaseException:
                for later in stops[index + 1 :]:
                    later.set()
                statistics.clear()  # the traceback keeps this frame, not the share's sums
                raise
        return statistics

    futures: list[Future[Outputs]] = []
    try:
        futures.extend(pool.submit(score, index) for index in range(count))
    finally:
        wait(futures)
    summed: Outputs = {}
    for future in futures:  # in share order: the first error raises, sums add up in order
        for name, values in future.result().items():
            if name in summed:
                np.add(summed[name], values, out=summed[name])
            else:
                summed[name] = values
    return per_sample, summed


def _gather(
    part: Outputs,
    start: int,
    n: int,
    groups: Mapping[str, str],
    per_sample: Outputs,
    statistics: Outputs,
    in_arena: bool,
) -> None:
    """A chunk's per-sample values put into place (of ``n``), its statistics summed.

    The first chunk's arrays are kept as they are unless ``in_arena`` (memory a session
    reuses), and a batch's only chunk gives its per-sample arrays as they are. Per-sample
    arrays already in ``per_sample`` are filled in place.
    """
    for name, group in groups.items():
        values = part[name]
        if group == "per_sample":
            if len(values) == n and not in_arena:
                per_sample[name] = values
                continue
            if name not in per_sample:
                per_sample[name] = np.empty(n, dtype=values.dtype)
            per_sample[name][start : start + len(values)] = values
        elif name in statistics:
            np.add(statistics[name], values, out=statistics[name])
        else:
            statistics[name] = values.copy() if in_arena else values
