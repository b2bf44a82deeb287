"""The graph kinds ``focal export`` writes, one row each: how to build, describe and check them.

================================ ====================================== =========================
kind (file stem)                 module                                 checked on
================================ ====================================== =========================
evaluation                       ``EvaluationStep``                     the multi-class sweep
evaluation_statistics            ``EvaluationStatisticsStep``           the multi-class sweep
metrics                          ``MetricsFromStatistics``              merged halves of it
sigmoid_focal_loss               sigmoid focal loss, alpha 0.25         binary, to abs(x) = 1e4
multilabel_evaluation            ``MultilabelEvaluationStep``           the multi-label sweep
multilabel_evaluation_statistics ``MultilabelEvaluationStatisticsStep`` the multi-label sweep
multilabel_metrics               ``MultilabelMetricsFromStatistics``    merged halves of it
ranking                          ``RankingStep`` (one-vs-rest, opt-in)  the multi-class sweep
ranking_statistics               ``RankingStatisticsStep``              the multi-class sweep
ranking_metrics                  ``RankingFromStatistics``              merged halves of it
================================ ====================================== =========================

A ``*_statistics`` graph is its step without the metrics: a server runs it on the chunks of a
large batch and the metrics graph once on their summed statistics.

A step is checked against its eager module on the same inputs; a metrics graph on the merged
statistics of a batch's two halves, against eager metrics of the whole batch's statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from focal_eval.export._flat import (
    SigmoidFocalLossGraph,
    example_evaluation_inputs,
    example_multilabel_inputs,
    example_ranking_inputs,
    flatten,
)
from focal_eval.export.edges import (
    SlackRule,
    multiclass_slack,
    multilabel_slack,
    no_slack,
    ranking_slack,
)
from focal_eval.export.signature import symbolic
from focal_eval.export.sweeps import (
    Case,
    Inputs,
    LabelCase,
    ranking_inputs,
    sigmoid_cases,
    sigmoid_inputs,
)
from focal_eval.focal import (
    EvaluationStatisticsStep,
    EvaluationStep,
    Metrics,
    MetricsFromStatistics,
    MultilabelEvaluationStatisticsStep,
    MultilabelEvaluationStep,
    MultilabelMetrics,
    MultilabelMetricsFromStatistics,
    MultilabelPerSample,
    MultilabelStatistics,
    PerSample,
    Ranking,
    RankingFromStatistics,
    RankingStatistics,
    RankingStatisticsStep,
    RankingStep,
    Statistics,
    merge,
    merge_multilabel,
    merge_ranking,
)
from focal_eval.focal.multilabel import DEFAULT_ALPHA, DEFAULT_THRESHOLD
from focal_eval.focal.ranking import DEFAULT_SCORE_BINS
from focal_eval.focal.statistics import DEFAULT_NUM_BINS

FORMATS = ("onnx", "torchscript", "pt2")
SIGMOID_ALPHA = 0.25
BATCH_INPUTS = 2  # every step's first inputs, the logits and their targets, have the rows
TRACE_SIZE = (64, 5)  # rows and width of the inputs a graph is exported from


@dataclass(frozen=True)
class Options:
    """Settings of one export: constants of the graphs, and the defaults manifests record."""

    gamma: float = 2.0
    ignore_index: int = -100
    num_bins: int = DEFAULT_NUM_BINS
    score_bins: int = DEFAULT_SCORE_BINS


@dataclass(frozen=True)
class Sweeps:
    """The batches the artifacts are checked on, by family."""

    multiclass: Sequence[Case]
    multilabel: Sequence[LabelCase]


@dataclass(frozen=True)
class Merged:
    """A metrics graph's check: statistics of ``step``, of two halves summed by ``merge``."""

    step: GraphKind
    merge: Callable[[Any, Any], Any]


@dataclass(frozen=True)
class GraphKind:
    """One row of the table.

    Attributes:
        name: the manifest's ``kind``, and the artifact's file stem.
        module: the eager module, from the export's options.
        inputs: graph input names, the module's ``forward`` arguments in order.
        outputs: ``(name, group)`` of each output in order (group "" outside evaluation-like
            graphs).
        example: inputs at ``(options, rows, width)``, to export from and to find the shapes.
        width: the symbol of the second dynamic dimension: "C" (classes), "L" (labels) or "K".
        defaults: what the manifest records for servers.
        cases: the batches it is checked on, from the sweeps.
        case_inputs: a case's inputs.
        slack: the looseness samples on a bin edge or the threshold give (see ``edges``).
        merged: set for a metrics graph: checked on merged statistics.
        formats: the formats it is written in, when asked for.
    """

    name: str
    module: Callable[[Options], nn.Module]
    inputs: tuple[str, ...]
    outputs: tuple[tuple[str, str], ...]
    example: Callable[[Options, int, int], Inputs]
    width: str
    defaults: Callable[[Options], dict[str, Any]]
    cases: Callable[[Sweeps], Sequence[Any]]
    case_inputs: Callable[[Any], Inputs]
    slack: SlackRule = no_slack
    merged: Merged | None = None
    formats: tuple[str, ...] = ("onnx",)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Graph output names in order."""
        return tuple(name for name, _ in self.outputs)

    def signature(self, options: Options) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Inputs and outputs for the manifest: name, dtype, symbolic shape (and group)."""
        symbols = ("N", self.width)
        module = self.module(options)

        def outputs(n: int, w: int) -> list[torch.Tensor]:
            with torch.no_grad():
                return flatten(module(*self.example(options, n, w)))

        described = symbolic(outputs, self.output_names, symbols)
        return (
            symbolic(lambda n, w: self.example(options, n, w), self.inputs, symbols),
            [
                entry | {"group": group} if group else entry
                for entry, (_, group) in zip(described, self.outputs, strict=True)
            ],
        )


def statistics(step: nn.Module, inputs: Inputs, rows: slice = slice(None)) -> Any:
    """The statistics ``step`` (an evaluation-like module) gives for ``rows`` of a batch."""
    batch = tuple(tensor[rows] for tensor in inputs[:BATCH_INPUTS])
    with torch.no_grad():
        return step(*batch, *inputs[BATCH_INPUTS:]).statistics


def grouped(**groups: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``(name, group)`` of each field of each group, in order."""
    return tuple((name, group) for group, names in groups.items() for name in names)


def ungrouped(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``(name, "")`` of each name."""
    return tuple((name, "") for name in names)


def metrics_of(
    step: GraphKind,
    name: str,
    module: Callable[[], nn.Module],
    fields: tuple[tuple[str, ...], tuple[str, ...]],
    merge: Callable[[Any, Any], Any],
) -> GraphKind:
    """The metrics graph of ``step``'s statistics: ``fields`` are (statistics, metrics)."""
    return GraphKind(
        name=name,
        module=lambda options: module(),
        inputs=fields[0],
        outputs=ungrouped(fields[1]),
        example=lambda options, n, w: tuple(
            statistics(step.module(options), step.example(options, n, w))
        ),
        width=step.width,
        defaults=step.defaults,
        cases=step.cases,
        case_inputs=step.case_inputs,
        merged=Merged(step, merge),
    )


def statistics_of(step: GraphKind, module: Callable[[Options], nn.Module]) -> GraphKind:
    """``step`` without its metrics (``module``): the graph a server runs on chunks of a batch.

    Its kind is ``<step>_statistics``; its outputs are the step's per-sample values and
    statistics, in the step's order, checked on the step's cases.
    """
    return replace(
        step,
        name=f"{step.name}_statistics",
        module=module,
        outputs=tuple((name, group) for name, group in step.outputs if group != "metrics"),
        formats=("onnx",),
    )


def multiclass_defaults(options: Options) -> dict[str, Any]:
    """gamma, ignore_index, num_bins and alpha (None: ones)."""
    return {
        "gamma": options.gamma,
        "ignore_index": options.ignore_index,
        "num_bins": options.num_bins,
        "alpha": None,
    }


def multilabel_defaults(options: Options) -> dict[str, Any]:
    """gamma, alpha (of positives), threshold, ignore_index, num_bins and score_bins."""
    return {
        "gamma": options.gamma,
        "alpha": DEFAULT_ALPHA,
        "threshold": DEFAULT_THRESHOLD,
        "ignore_index": options.ignore_index,
        "num_bins": options.num_bins,
        "score_bins": options.score_bins,
    }


def ranking_defaults(options: Options) -> dict[str, Any]:
    """ignore_index and score_bins."""
    return {"ignore_index": options.ignore_index, "score_bins": options.score_bins}


EVALUATION = GraphKind(
    name="evaluation",
    module=lambda options: EvaluationStep(options.num_bins),
    inputs=("logits", "labels", "alpha", "gamma", "ignore_index"),
    outputs=grouped(
        per_sample=PerSample._fields, statistics=Statistics._fields, metrics=Metrics._fields
    ),
    example=lambda options, n, c: example_evaluation_inputs(n, c),
    width="C",
    defaults=multiclass_defaults,
    cases=lambda sweeps: sweeps.multiclass,
    case_inputs=Case.inputs,
    slack=multiclass_slack,
    formats=FORMATS,
)
METRICS = metrics_of(
    EVALUATION,
    "metrics",
    MetricsFromStatistics,
    (Statistics._fields, Metrics._fields),
    merge,
)
EVALUATION_STATISTICS = statistics_of(
    EVALUATION, lambda options: EvaluationStatisticsStep(options.num_bins)
)
SIGMOID_FOCAL_LOSS = GraphKind(
    name="sigmoid_focal_loss",
    module=lambda options: SigmoidFocalLossGraph(SIGMOID_ALPHA, options.gamma),
    inputs=("logits", "targets"),
    outputs=ungrouped(("focal_loss",)),
    example=lambda options, n, k: sigmoid_inputs(Case(n, k, 2.0, False, 0.0, 1.0)),
    width="K",
    defaults=multiclass_defaults,
    cases=lambda sweeps: sigmoid_cases(),
    case_inputs=sigmoid_inputs,
)
MULTILABEL_EVALUATION = GraphKind(
    name="multilabel_evaluation",
    module=lambda options: MultilabelEvaluationStep(options.num_bins, options.score_bins),
    inputs=("logits", "targets", "alpha", "gamma", "threshold", "ignore_index"),
    outputs=grouped(
        per_sample=MultilabelPerSample._fields,
        statistics=MultilabelStatistics._fields,
        metrics=MultilabelMetrics._fields,
    ),
    example=lambda options, n, num_labels: example_multilabel_inputs(n, num_labels),
    width="L",
    defaults=multilabel_defaults,
    cases=lambda sweeps: sweeps.multilabel,
    case_inputs=LabelCase.inputs,
    slack=multilabel_slack,
    formats=("onnx", "torchscript"),
)
MULTILABEL_METRICS = metrics_of(
    MULTILABEL_EVALUATION,
    "multilabel_metrics",
    MultilabelMetricsFromStatistics,
    (MultilabelStatistics._fields, MultilabelMetrics._fields),
    merge_multilabel,
)
MULTILABEL_EVALUATION_STATISTICS = statistics_of(
    MULTILABEL_EVALUATION,
    lambda options: MultilabelEvaluationStatisticsStep(options.num_bins, options.score_bins),
)
RANKING = GraphKind(
    name="ranking",
    module=lambda options: RankingStep(options.score_bins),
    inputs=("logits", "labels", "ignore_index"),
    outputs=grouped(statistics=RankingStatistics._fields, metrics=Ranking._fields),
    example=lambda options, n, c: example_ranking_inputs(n, c),
    width="C",
    defaults=ranking_defaults,
    cases=lambda sweeps: sweeps.multiclass,
    case_inputs=ranking_inputs,
    slack=ranking_slack,
)
RANKING_METRICS = metrics_of(
    RANKING,
    "ranking_metrics",
    RankingFromStatistics,
    (RankingStatistics._fields, Ranking._fields),
    merge_ranking,
)
RANKING_STATISTICS = statistics_of(
    RANKING, lambda options: RankingStatisticsStep(options.score_bins)
)

KINDS = (
    EVALUATION,
    EVALUATION_STATISTICS,
    METRICS,
    SIGMOID_FOCAL_LOSS,
    MULTILABEL_EVALUATION,
    MULTILABEL_EVALUATION_STATISTICS,
    MULTILABEL_METRICS,
    RANKING,
    RANKING_STATISTICS,
    RANKING_METRICS,
)
