"""The flow of ``focal evaluate``: blocks of rows in, summed statistics and metrics out.

Each block of rows is scored by a backend (:mod:`focal_eval.evaluate.backends`: this
process's graphs, or a server) exactly as ``/score`` would score it; its statistics are added
to the dataset's and to its slice's, and the metrics are computed once at the end from the
sums. Memory is three blocks' (``batch_rows`` rows each: the one scored, one waiting and the
one being decoded, with its record batch: :mod:`~focal_eval.evaluate.read_ahead`) plus the
sums: it does not grow with the dataset.

Slices: the statistics of each combination of the ``slice_by`` columns' values are kept
(at most ``max_slices`` combinations); each column's own values are sums of combinations. A
slice's rows are scored a block at a time (each graph run costs C^2 for its metrics, so many
small runs would cost more than the rows): they wait until the slice fills a block, or until
the slices hold ``PENDING_BLOCKS`` blocks of rows, when the largest is scored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from focal_eval.evaluate.backends import Backend, Options, Part
from focal_eval.evaluate.read_ahead import read_ahead
from focal_eval.evaluate.sources import Block, Columns, InputError, blocks
from focal_eval.evaluate.statistics import Statistics, merge
from focal_eval.service.core.scoring import Outputs
from focal_eval.service.core.tasks import BINARY

SliceKey = tuple[Any, ...]
PENDING_BLOCKS = 8  # slices' rows held before the largest is scored: memory, in blocks
PerSampleSink = Callable[[Block, Outputs], None]


@dataclass
class Sums:
    """Statistics summed so far, and the rows they came from."""

    statistics: Statistics | None = None
    rows: int = 0

    def add(self, statistics: Statistics, rows: int) -> None:
        """Add one block's statistics, in place after the first."""
        if self.statistics is None:
            self.statistics = {name: np.array(value) for name, value in statistics.items()}
        else:
            for name, value in merge(self.statistics, statistics).items():
                self.statistics[name][...] = value
        self.rows += rows

    def summed(self) -> Statistics:
        """The sums (at least one block was added)."""
        if self.statistics is None:
            raise ValueError("Expected statistics of at least one block, but got none")
        return self.statistics


@dataclass
class Run:
    """The state of one evaluation: the first block's task and width, sums, inputs read."""

    first: Part | None = None
    whole: Sums = field(default_factory=Sums)
    slices: dict[SliceKey, Sums] = field(default_factory=dict)
    pending: dict[SliceKey, list[Block]] = field(default_factory=dict)  # rows not yet scored
    inputs: list[dict[str, Any]] = field(default_factory=list)
    valid: int = 0


def evaluate_files(
    files: Sequence[str],
    columns: Columns,
    options: Options,
    backend: Backend,
    on_rows: Callable[[int], None] | None = None,
    per_sample: PerSampleSink | None = None,
) -> dict[str, Any]:
    """Score every row of ``files`` and return the result document (JSON-ready but for NaN).

    ``on_rows`` is called with each block's row count (progress); ``per_sample`` with each
    block and its per-sample outputs (when ``options.per_sample``).

    Raises:
        InputError: bad data, named by file and rows; a width that changes; too many slices.
    """
    run = Run()
    for path in files:
        rows = 0
        for block in read_ahead(blocks(path, columns, options.batch_rows)):
            _score_block(run, backend, options, block, per_sample)
            rows += block.rows
            if on_rows is not None:
                on_rows(block.rows)
        run.inputs.append({"path": path, "rows": rows})
    for key in list(run.pending):
        _score_slice(run, backend, options, key)
    return document(run, files, backend, options)


def _score_block(
    run: Run, backend: Backend, options: Options, block: Block, per_sample: PerSampleSink | None
) -> None:
    part = backend.score(block, slice(None), options, per_sample is not None)
    add_block(run, block.where(), part, block.rows, [], options)
    if per_sample is not None:
        per_sample(block, part.per_sample)
    for key, rows in slice_rows(block, options.slice_by):
        if key not in run.slices and key not in run.pending:
            _check_slice_count(run, block.where(), options)
        run.pending.setdefault(key, []).append(
            Block(block.path, block.first, block.logits[rows], block.labels[rows])
        )
        if _rows(run.pending[key]) >= options.batch_rows:
            _score_slice(run, backend, options, key)
    while sum(_rows(b) for b in run.pending.values()) > PENDING_BLOCKS * options.batch_rows:
        _score_slice(run, backend, options, max(run.pending, key=lambda k: _rows(run.pending[k])))


def _rows(blocks: Sequence[Block]) -> int:
    return sum(block.rows for block in blocks)


def _score_slice(run: Run, backend: Backend, options: Options, key: SliceKey) -> None:
    """Score a slice's pending rows as one block (fewer, larger graph runs: each costs C^2).

    The rows were validated as part of their blocks already.
    """
    blocks = run.pending.pop(key)
    merged = Block(
        blocks[0].path,
        blocks[0].first,
        np.concatenate([b.logits for b in blocks]),
        np.concatenate([b.labels for b in blocks]),
    )
    part = backend.score(merged, slice(None), options, False)
    run.slices.setdefault(key, Sums()).add(part.statistics, merged.rows)


def _check_slice_count(run: Run, where: str, options: Options) -> None:
    if len(run.slices.keys() | run.pending.keys()) >= options.max_slices:
        raise InputError(
            f"{where}: --slice-by {','.join(options.slice_by)} gives more than"
            f" {options.max_slices} slices (--max-slices)"
        )


def add_block(
    run: Run,
    where: str,
    part: Part,
    rows: int,
    slices: Sequence[tuple[SliceKey, Part, int]],
    options: Options,
) -> None:
    """Add a scored block (and its slices' parts) to the run.

    Raises:
        InputError: the task or width is not the rows' before (or ``--num-classes``), or
            there would be more than ``max_slices`` slices.
    """
    if run.first is None:
        if options.num_classes is not None and part.width != options.num_classes:
            raise InputError(
                f"{where}: {part.width} {part.unit}, but --num-classes is {options.num_classes}"
            )
        run.first = part
    first = run.first
    if (part.task, part.width) != (first.task, first.width):
        raise InputError(
            f"{where}: {part.task} with {part.width} {part.unit}, but the rows before"
            f" were {first.task} with {first.width}"
        )
    run.valid += part.valid
    run.whole.add(part.statistics, rows)
    for key, sliced, count in slices:
        if key not in run.slices:
            _check_slice_count(run, where, options)
        run.slices.setdefault(key, Sums()).add(sliced.statistics, count)


def slice_rows(
    block: Block, slice_by: Sequence[str]
) -> Iterator[tuple[SliceKey, npt.NDArray[np.bool_]]]:
    """Each combination of the slice columns' values in the block, and its rows."""
    if not slice_by:
        return
    keys = list(zip(*(_slice_values(block, name) for name in slice_by), strict=True))
    order: dict[SliceKey, list[int]] = {}
    for row, key in enumerate(keys):
        order.setdefault(key, []).append(row)
    for key, rows in order.items():
        mask = np.zeros(block.rows, dtype=bool)
        mask[rows] = True
        yield key, mask


def _slice_values(block: Block, name: str) -> list[Any]:
    """A slice column's values as Python scalars (None for a null).

    Raises:
        InputError: a column of another type than integers, strings or booleans.
    """
    column = block.passed[name]
    kind = column.dtype.kind if isinstance(column, np.ndarray) else _arrow_kind(column.type)
    if kind not in "iubU":
        shown = column.dtype if isinstance(column, np.ndarray) else column.type
        raise InputError(
            f"{block.where()}: --slice-by {name} holds {shown}; slice by integers, strings or"
            " booleans"
        )
    values: list[Any] = column.tolist() if isinstance(column, np.ndarray) else column.to_pylist()
    return values


def document(run: Run, files: Sequence[str], backend: Backend, options: Options) -> dict[str, Any]:
    """The result: metrics computed once, from the sums, by ``backend``.

    Raises:
        InputError: no rows were read.
    """
    first = run.first
    if first is None or run.whole.statistics is None:
        raise InputError(f"{', '.join(files)}: no rows")
    statistics = run.whole.summed()
    document: dict[str, Any] = {"model": backend.model, "task": first.task}
    if first.task != BINARY:
        document[f"num_{first.unit}"] = first.width
    document |= {
        "rows": run.whole.rows,
        "valid": run.valid,
        "parameters": first.parameters,
        "inputs": run.inputs,
        **backend.metrics(first.task, statistics),
        "statistics": statistics,
    }
    if options.slice_by:
        document["slices"] = _slices(run, first.task, backend, options.slice_by)
    return document


def _slices(run: Run, task: str, backend: Backend, slice_by: Sequence[str]) -> list[dict[str, Any]]:
    """Per value of each slice column, then (with several columns) per combination."""
    groups: list[tuple[dict[str, Any], Sums]] = []
    for i, name in enumerate(slice_by):
        by_value: dict[Any, Sums] = {}
        for key, sums in run.slices.items():
            by_value.setdefault(key[i], Sums()).add(sums.summed(), sums.rows)
        groups += [({name: value}, sums) for value, sums in sorted(by_value.items(), key=_order)]
    if len(slice_by) > 1:
        groups += [
            (dict(zip(slice_by, key, strict=True)), sums)
            for key, sums in sorted(run.slices.items(), key=_order)
        ]
    return [
        {
            "by": by,
            "rows": sums.rows,
            **backend.metrics(task, sums.summed()),
            "statistics": sums.summed(),
        }
        for by, sums in groups
    ]


def _arrow_kind(arrow_type: Any) -> str:
    """The numpy kind letter of an arrow type a slice may hold (a dictionary: its values')."""
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_integer(arrow_type):
        return "i"
    if pa.types.is_boolean(arrow_type):
        return "b"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "U"
    return "?"


def _order(item: tuple[Any, Sums]) -> tuple[tuple[bool, Any], ...]:
    """Slices by value (numbers as numbers), a null last."""
    values = item[0] if isinstance(item[0], tuple) else (item[0],)
    return tuple((value is None, "" if value is None else value) for value in values)
