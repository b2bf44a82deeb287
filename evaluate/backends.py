"""Where a block's statistics come from: this process's graphs, or a running server.

Both answer the same two questions: the statistics (and, locally, the per-sample values) of
some rows of a block, and the metrics of summed statistics. :class:`Local` runs the
service's own validation and onnxruntime graphs in process; :class:`Server` posts the rows to
``/score`` (``.npz`` chunks, 503 retried) and the sums to ``/compute``
(:mod:`focal_eval.evaluate.client`), so its numbers are that server's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from focal_eval.evaluate.client import Parameters, Remote, ServerError
from focal_eval.evaluate.sources import Block, InputError
from focal_eval.evaluate.statistics import Statistics
from focal_eval.service.core.batches import (
    Decoded,
    reported_parameters,
    scorer_for,
    validated,
)
from focal_eval.service.core.errors import RequestError
from focal_eval.service.core.metric_groups import metric_groups
from focal_eval.service.core.probabilities import check_inputs_kind, logits_of
from focal_eval.service.core.scoring import Outputs, Scorers
from focal_eval.service.core.settings import Settings
from focal_eval.service.core.tasks import MULTICLASS, task_of
from focal_eval.service.core.validation import batch_size


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


@dataclass(frozen=True)
class Part:
    """Some rows of a block, scored: task, width, statistics, valid labels, parameters."""

    task: str
    width: int
    unit: str  # classes or labels
    statistics: Statistics
    valid: int
    parameters: dict[str, Any]
    per_sample: Outputs = field(default_factory=dict)


class Backend(Protocol):
    """Scores rows and computes metrics (see the module)."""

    model: dict[str, Any]

    def score(self, block: Block, rows: Any, options: Options, per_sample: bool) -> Part:
        """The statistics of ``block``'s ``rows`` (per-sample values too if asked).

        Raises:
            InputError: the rows are refused, named by file and rows.
        """

    def metrics(self, task: str, statistics: Statistics) -> dict[str, Any]:
        """``{"metrics", "per_class" | "per_label"}`` of summed statistics."""


class Local:
    """The service's validation and graphs, in this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.scorers = Scorers.load(settings)
        self.model: dict[str, Any] = {}

    def score(self, block: Block, rows: Any, options: Options, per_sample: bool) -> Part:
        """See :class:`Backend`."""
        logits, labels = block.logits[rows], block.labels[rows]
        try:
            task = task_of(logits.shape, labels.shape, options.task)
            scorer = scorer_for(self.scorers, task)
            width = batch_size(logits, task, self.settings.max_classes)[1]
            alpha: Any = options.alpha
            if alpha is not None and task == MULTICLASS:
                alpha = np.asarray(alpha, np.float32)
            decoded = Decoded(
                logits,
                labels,
                alpha,
                options.gamma,
                options.ignore_index,
                None,
                None,
                task=task,
                inputs=options.inputs,
                threshold=options.threshold,
            )
            kind = check_inputs_kind(options.inputs)
            converted = logits if kind == "logits" else logits_of(task, logits)
            batch = validated(scorer, self.settings, task, converted, decoded)
            outputs = scorer.score(batch, None if per_sample else ())
        except RequestError as error:
            raise InputError(f"{block.where()}: {error.message}") from None
        self.model = self.model or {"id": scorer.model_id, "kind": scorer.evaluation.kind}
        targets = batch.inputs[scorer.task.labels]
        return Part(
            task,
            width,
            scorer.task.width,
            {name: outputs[name] for name in scorer.statistics_names},
            int(np.count_nonzero(targets != batch.parameters["ignore_index"])),
            reported_parameters(batch, options.alpha, self.settings),
            {name: outputs[name] for name in scorer.per_sample_names} if per_sample else {},
        )

    def metrics(self, task: str, statistics: Statistics) -> dict[str, Any]:
        """See :class:`Backend`."""
        scorer = scorer_for(self.scorers, task)
        return metric_groups(task, [scorer], scorer.compute_metrics(statistics))


class Server:
    """A running server: ``/score`` for statistics, ``/compute`` for metrics."""

    def __init__(self, remote: Remote, max_chunk_bytes: int) -> None:
        self.remote = remote
        self.max_chunk_bytes = max_chunk_bytes
        self.model: dict[str, Any] = {}

    def score(self, block: Block, rows: Any, options: Options, per_sample: bool) -> Part:
        """See :class:`Backend` (no per-sample values: the command refuses them first)."""
        parameters = Parameters(
            options.task,
            options.inputs,
            options.gamma,
            options.alpha,
            options.threshold,
            options.ignore_index,
        )
        logits, labels = block.logits[rows], block.labels[rows]
        try:
            scored = self.remote.statistics(
                logits, labels, parameters, self.max_chunk_bytes, first_row=block.first
            )
        except ServerError as error:
            raise InputError(f"{block.path}, {error}") from None
        self.model = self.model or scored.model
        statistics = scored.statistics
        if scored.task == MULTICLASS:
            width, valid = len(statistics["confusion_matrix"]), statistics["confusion_matrix"].sum()
        else:  # every decision is one of the four counts
            width = len(statistics["true_positive"])
            valid = sum(statistics[name].sum() for name in _OUTCOMES)
        return Part(
            scored.task,
            width,
            "classes" if scored.task == MULTICLASS else "labels",
            statistics,
            int(valid),
            scored.parameters,
        )

    def metrics(self, task: str, statistics: Statistics) -> dict[str, Any]:
        """See :class:`Backend`."""
        computed = self.remote.compute(statistics, task)
        return {k: v for k, v in computed.items() if k in ("metrics", "per_class", "per_label")}


_OUTCOMES = ("true_positive", "false_positive", "false_negative", "true_negative")
