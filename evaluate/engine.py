"""The local engine of ``focal evaluate``: record batches through the service's graphs.

Each block of rows is checked and scored exactly as ``/score`` would (the same validation,
the same onnxruntime graphs, :class:`~focal_eval.service.core.scoring.Scorer`), its
statistics added to the dataset's and to its slice's; metrics are computed once at the end
from the sums. Memory is one block's (``batch_rows`` rows) plus the sums: it does not grow
with the dataset.

Slices: the statistics of each combination of the ``slice_by`` columns' values are kept
(at most ``max_slices`` combinations); each column's own values are sums of combinations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from focal_eval.evaluate.sources import Block, Columns, InputError, blocks
from focal_eval.evaluate.statistics import Statistics, merge
from focal_eval.service.core.batches import Decoded, scorer_for, validated
from focal_eval.service.core.errors import RequestError
from focal_eval.service.core.metric_groups import metric_groups
from focal_eval.service.core.probabilities import check_inputs_kind, logits_of
from focal_eval.service.core.scoring import Outputs, Scorer, Scorers
from focal_eval.service.core.settings import Settings
from focal_eval.service.core.tasks import BINARY, task_of
from focal_eval.service.core.validation import batch_size

SliceKey = tuple[Any, ...]


@dataclass(frozen=True)
class Options:
    """What to compute: the request's parameters, slices, per-sample outputs, block size."""

    task: str | None = None
    inputs: str | None = None
    gamma: float | None = None
    alpha: list[float] | float | None = None
    ignore_index: int | None = None
    threshold: float | None = None
    num_classes: int | None = None
    slice_by: tuple[str, ...] = ()
    max_slices: int = 100
    per_sample: bool = False
    batch_rows: int = 65_536


@dataclass
class Sums:
    """Statistics summed so far, and the rows they came from."""

    statistics: Statistics | None = None
    rows: int = 0

    def add(self, statistics: Statistics, rows: int) -> None:
        """Add one block's statistics."""
        self.statistics = (
            statistics if self.statistics is None else merge(self.statistics, statistics)
        )
        self.rows += rows

    def summed(self) -> Statistics:
        """The sums (at least one block was added)."""
        if self.statistics is None:
            raise ValueError("Expected statistics of at least one block, but got none")
        return self.statistics


@dataclass
class Run:
    """The state of one evaluation: task, graphs, sums, inputs read."""

    task: str = ""
    scorer: Scorer | None = None
    width: int = 0
    parameters: dict[str, Any] = field(default_factory=dict)
    whole: Sums = field(default_factory=Sums)
    slices: dict[SliceKey, Sums] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    valid: int = 0


PerSampleSink = Callable[[Block, Outputs], None]


def evaluate_files(
    files: Sequence[str],
    columns: Columns,
    options: Options,
    settings: Settings | None = None,
    on_rows: Callable[[int], None] | None = None,
    per_sample: PerSampleSink | None = None,
) -> dict[str, Any]:
    """Score every row of ``files`` and return the result document (JSON-ready but for NaN).

    ``on_rows`` is called with each block's row count (progress); ``per_sample`` with each
    block and its per-sample outputs (when ``options.per_sample``).

    Raises:
        InputError: bad data, named by file and rows; a width that changes; too many slices.
    """
    settings = settings or Settings()
    scorers = Scorers.load(settings)
    run = Run()
    for path in files:
        rows = 0
        for block in blocks(path, columns, options.batch_rows):
            _score_block(run, scorers, settings, options, block, per_sample)
            rows += block.rows
            if on_rows is not None:
                on_rows(block.rows)
        run.inputs.append({"path": path, "rows": rows})
    if run.scorer is None or run.whole.statistics is None:
        raise InputError(f"{', '.join(files)}: no rows")
    return _document(run, run.scorer, run.whole.statistics, options)


def _score_block(
    run: Run,
    scorers: Scorers,
    settings: Settings,
    options: Options,
    block: Block,
    per_sample: PerSampleSink | None,
) -> None:
    try:
        task = task_of(block.logits.shape, block.labels.shape, options.task)
        scorer = scorer_for(scorers, task)
        width = batch_size(block.logits, task, settings.max_classes)[1]
    except RequestError as error:
        raise InputError(f"{block.where()}: {error.message}") from None
    if run.scorer is None:
        expected = options.num_classes or width
        run.task, run.scorer, run.width = task, scorer, expected
    if (task, width) != (run.task, run.width):
        raise InputError(
            f"{block.where()}: {task} with {width} {scorer.task.width}, but the rows before"
            f" were {run.task} with {run.width}"
            + (" (--num-classes)" if options.num_classes else "")
        )
    keep = None if options.per_sample else ()
    outputs, batch = _scored(scorer, settings, options, task, block, slice(None), keep)
    run.parameters = run.parameters or _parameters(batch.parameters)
    labels = batch.inputs[scorer.task.labels]
    run.valid += int(np.count_nonzero(labels != batch.parameters["ignore_index"]))
    run.whole.add({n: outputs[n] for n in scorer.statistics_names}, block.rows)
    if per_sample is not None:
        per_sample(block, {name: outputs[name] for name in scorer.per_sample_names})
    for key, rows in _slice_rows(block, options.slice_by):
        if key not in run.slices and len(run.slices) >= options.max_slices:
            raise InputError(
                f"{block.where()}: --slice-by {','.join(options.slice_by)} gives more than"
                f" {options.max_slices} slices (--max-slices)"
            )
        part, _ = _scored(scorer, settings, options, task, block, rows, ())
        run.slices.setdefault(key, Sums()).add(
            {n: part[n] for n in scorer.statistics_names}, int(np.count_nonzero(rows))
        )


def _scored(
    scorer: Scorer,
    settings: Settings,
    options: Options,
    task: str,
    block: Block,
    rows: Any,
    keep: Sequence[str] | None,
) -> tuple[Outputs, Any]:
    logits, labels = block.logits[rows], block.labels[rows]
    decoded = Decoded(
        logits,
        labels,
        options.alpha
        if options.alpha is None or task != "multiclass"
        else np.asarray(options.alpha, np.float32),
        options.gamma,
        options.ignore_index,
        None,
        None,
        task=task,
        inputs=options.inputs,
        threshold=options.threshold,
    )
    try:
        kind = check_inputs_kind(options.inputs)
        converted = logits if kind == "logits" else logits_of(task, logits)
        batch = validated(scorer, settings, task, converted, decoded)
        return scorer.score(batch, keep), batch
    except RequestError as error:
        raise InputError(f"{block.where()}: {error.message}") from None


def _slice_rows(
    block: Block, slice_by: Sequence[str]
) -> Iterator[tuple[SliceKey, npt.NDArray[np.bool_]]]:
    """Each combination of the slice columns' values in the block, and its rows."""
    if not slice_by:
        return
    values = [_as_numpy(block.passed[name]) for name in slice_by]
    keys = list(zip(*(v.tolist() for v in values), strict=True))
    order: dict[SliceKey, list[int]] = {}
    for row, key in enumerate(keys):
        order.setdefault(key, []).append(row)
    for key, rows in order.items():
        mask = np.zeros(block.rows, dtype=bool)
        mask[rows] = True
        yield key, mask


def _as_numpy(column: Any) -> npt.NDArray[Any]:
    return (
        column
        if isinstance(column, np.ndarray)
        else np.asarray(column.to_numpy(zero_copy_only=False))
    )


def _parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in parameters.items()}


def _document(run: Run, scorer: Scorer, statistics: Statistics, options: Options) -> dict[str, Any]:
    document: dict[str, Any] = {
        "model": {"id": scorer.model_id, "kind": scorer.evaluation.kind},
        "task": run.task,
    }
    if run.task != BINARY:
        document[f"num_{scorer.task.width}"] = run.width
    document |= {
        "rows": run.whole.rows,
        "valid": run.valid,
        "parameters": run.parameters,
        "inputs": run.inputs,
        **_metrics(run.task, scorer, statistics),
        "statistics": statistics,
    }
    if options.slice_by:
        document["slices"] = _slices(run, scorer, options.slice_by)
    return document


def _metrics(task: str, scorer: Scorer, statistics: Statistics) -> dict[str, Any]:
    return metric_groups(task, [scorer], scorer.compute_metrics(statistics))


def _slices(run: Run, scorer: Scorer, slice_by: Sequence[str]) -> list[dict[str, Any]]:
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
            **_metrics(run.task, scorer, sums.summed()),
            "statistics": sums.summed(),
        }
        for by, sums in groups
    ]


def _order(item: tuple[Any, Sums]) -> str:
    return repr(item[0])
