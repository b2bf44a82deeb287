"""A large batch scored chunk by chunk: per-sample values put in place, statistics summed.

A chunk is a run of a graph on a slice of the batch's rows (``run(rows)``); its statistics
are additive, so a batch's are the sum of its chunks'. :func:`in_turn` runs the chunks one
after another in the caller's thread. :func:`side_by_side` gives each of a pool's workers
one contiguous share of the chunks: a worker runs its share in order, puts the per-sample
values into the batch's arrays (its own rows) and sums its statistics; the caller adds the
shares' sums in share order. So the workers never wait for the caller between chunks, and
the sums are added in the same order whatever the timing: the same batch gives the same
bits. At most one chunk per worker is running, and one set of sums per worker is alive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numpy as np
import numpy.typing as npt

Outputs = dict[str, npt.NDArray[Any]]
Run = Callable[[slice], Outputs]


def in_turn(
    run: Run, spans: Sequence[slice], n: int, groups: Mapping[str, str], in_arena: bool
) -> tuple[Outputs, Outputs]:
    """The chunks run one after another: per-sample values of the ``n`` rows, summed statistics.

    ``groups`` names the outputs to keep (``per_sample`` or ``statistics``).
    """
    per_sample: Outputs = {}
    statistics: Outputs = {}
    for span in spans:
        part = run(span)
        gather(part, span.start, n, groups, per_sample, statistics, in_arena)
        del part
    return per_sample, statistics


def side_by_side(
    run: Run,
    spans: Sequence[slice],
    n: int,
    per_sample: Outputs,
    groups: Mapping[str, str],
    pool: ThreadPoolExecutor,
    workers: int,
) -> Outputs:
    """The chunks in ``workers`` contiguous shares on ``pool``: the summed statistics.

    ``per_sample`` holds the arrays of the batch's ``n`` rows, filled in place (the chunks'
    outputs are in an arena, reused). Every share has ended when this returns: no run goes
    on for a request that has ended.

    Raises:
        Exception: the error of the first share that failed, that is, of the first failing
            chunk in the order of the rows (a share stops at its first failure, and those
            after it stop at their next chunk: their errors would come later in that order).
    """
    count = min(workers, len(spans))
    shares = [spans[len(spans) * i // count : len(spans) * (i + 1) // count] for i in range(count)]
    stops = [threading.Event() for _ in shares]

    def score(index: int) -> Outputs:
        statistics: Outputs = {}
        for span in shares[index]:
            if stops[index].is_set():
                break
            try:
                part = run(span)
            except BaseException:
                for later in stops[index + 1 :]:
                    later.set()
                raise
            gather(part, span.start, n, groups, per_sample, statistics, in_arena=True)
            del part
        return statistics

    futures = [pool.submit(score, index) for index in range(count)]
    wait(futures)
    summed: Outputs = {}
    for future in futures:  # in share order: the first error raises, sums add up in order
        for name, values in future.result().items():
            if name in summed:
                np.add(summed[name], values, out=summed[name])
            else:
                summed[name] = values
    return summed


def gather(
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
