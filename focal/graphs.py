"""Tensor-in, tensor-out modules of the evaluation step: what :mod:`export` turns into graphs.

Every parameter is a graph input (so N and C stay dynamic: an ``alpha`` baked in as a buffer would
fix C), inputs are not validated (a graph cannot raise; callers validate first, as
:func:`focal_eval.focal.statistics.update` and the service do), and outputs are flat named tuples
whose field names become the graph's output names.
"""

from typing import NamedTuple

from torch import Tensor, nn

from focal_eval.focal._fields import define, keyword_arguments
from focal_eval.focal._validation import check_num_bins, check_score_bins
from focal_eval.focal.metrics import Metrics, _compute
from focal_eval.focal.multilabel import (
    MultilabelPerSample,
    MultilabelStatistics,
    _update_multilabel,
)
from focal_eval.focal.multilabel_metrics import MultilabelMetrics, _compute_multilabel
from focal_eval.focal.ranking import (
    DEFAULT_SCORE_BINS,
    Ranking,
    RankingStatistics,
    _update_ranking,
    ranking,
)
from focal_eval.focal.statistics import DEFAULT_NUM_BINS, PerSample, Statistics, _update


class EvaluationOutputs(NamedTuple):
    """Everything one batch yields: per-sample values, statistics, metrics."""

    per_sample: PerSample
    statistics: Statistics
    metrics: Metrics


class EvaluationStep(nn.Module):
    """``(logits, labels, alpha, gamma, ignore_index) -> EvaluationOutputs``.

    Inputs: logits float ``(N, C)``, labels int64 ``(N,)`` (each in ``[0, C)`` or equal to
    ``ignore_index``), alpha float ``(C,)``, gamma float ``()``, ignore_index int64 ``()``.

    Args:
        num_bins: calibration bins, a constant of the graph.
    """

    def __init__(self, num_bins: int = DEFAULT_NUM_BINS) -> None:
        super().__init__()
        check_num_bins(num_bins)
        self.num_bins = num_bins

    def forward(
        self, logits: Tensor, labels: Tensor, alpha: Tensor, gamma: Tensor, ignore_index: Tensor
    ) -> EvaluationOutputs:
        """One batch to per-sample values, its statistics and their metrics."""
        per_sample, statistics = _update(logits, labels, alpha, gamma, ignore_index, self.num_bins)
        return EvaluationOutputs(per_sample, statistics, _compute(statistics))


class EvaluationStatistics(NamedTuple):
    """One batch's per-sample values and statistics: the evaluation step without its metrics."""

    per_sample: PerSample
    statistics: Statistics


class EvaluationStatisticsStep(EvaluationStep):
    """:class:`EvaluationStep` without the metrics: the graph for the chunks of a large batch.

    The chunks' statistics are summed and give the metrics once
    (:class:`MetricsFromStatistics`), where the whole step would compute its ``C x C`` metrics
    in every chunk. The multi-label and ranking steps have theirs alike.
    """

    # the same inputs, fewer outputs (TorchScript reads a type comment only at a line's end)
    def forward(  # type: ignore[override]
        self, logits: Tensor, labels: Tensor, alpha: Tensor, gamma: Tensor, ignore_index: Tensor
    ) -> EvaluationStatistics:
        """One batch to per-sample values and its statistics."""
        return EvaluationStatistics(
            *_update(logits, labels, alpha, gamma, ignore_index, self.num_bins)
        )


class MetricsFromStatistics(nn.Module):
    """Metrics of statistics given as tensors, one per field of :class:`~.statistics.Statistics`.

    ``forward(self, confusion_matrix, focal_loss_sum, ...)`` is written from ``Statistics._fields``
    in their order (see :mod:`focal_eval.focal._fields`): its argument names are the metrics graph's
    input names, and a new statistic is a new argument.
    """

    forward = define(
        "forward",
        f'''def forward(self, {", ".join(f"{field}: Tensor" for field in Statistics._fields)}
) -> Metrics:
    """Metrics of (merged) statistics."""
    return _compute(Statistics({keyword_arguments(Statistics._fields, "{}")}))
''',
        globals(),
        qualname="MetricsFromStatistics.forward",
    )


class MultilabelEvaluationOutputs(NamedTuple):
    """Everything one multi-label batch yields: per-sample values, statistics, metrics."""

    per_sample: MultilabelPerSample
    statistics: MultilabelStatistics
    metrics: MultilabelMetrics


class MultilabelEvaluationStep(nn.Module):
    """``(logits, targets, alpha, gamma, threshold, ignore_index) -> MultilabelEvaluationOutputs``.

    Inputs: logits float ``(N, L)``, targets int64 ``(N, L)`` (0, 1 or ``ignore_index``), alpha,
    gamma and threshold float ``()``, ignore_index int64 ``()``.

    Args:
        num_bins: calibration bins, a constant of the graph.
        score_bins: score bins of the ranking histograms, a constant of the graph.
    """

    def __init__(
        self, num_bins: int = DEFAULT_NUM_BINS, score_bins: int = DEFAULT_SCORE_BINS
    ) -> None:
        super().__init__()
        check_num_bins(num_bins)
        check_score_bins(score_bins)
        self.num_bins = num_bins
        self.score_bins = score_bins

    def forward(
        self,
        logits: Tensor,
        targets: Tensor,
        alpha: Tensor,
        gamma: Tensor,
        threshold: Tensor,
        ignore_index: Tensor,
    ) -> MultilabelEvaluationOutputs:
        """One batch to per-sample values, its statistics and their metrics."""
        per_sample, statistics = _update_multilabel(
            logits, targets, alpha, gamma, threshold, ignore_index, self.num_bins, self.score_bins
        )
        return MultilabelEvaluationOutputs(per_sample, statistics, _compute_multilabel(statistics))


class MultilabelEvaluationStatistics(NamedTuple):
    """One multi-label batch's per-sample values and statistics, without its metrics."""

    per_sample: MultilabelPerSample
    statistics: MultilabelStatistics


class MultilabelEvaluationStatisticsStep(MultilabelEvaluationStep):
    """:class:`MultilabelEvaluationStep` without the metrics: the graph for chunks of a batch."""

    # the same inputs, fewer outputs (TorchScript reads a type comment only at a line's end)
    def forward(  # type: ignore[override]
        self,
        logits: Tensor,
        targets: Tensor,
        alpha: Tensor,
        gamma: Tensor,
        threshold: Tensor,
        ignore_index: Tensor,
    ) -> MultilabelEvaluationStatistics:
        """One batch to per-sample values and its statistics."""
        return MultilabelEvaluationStatistics(
            *_update_multilabel(
                logits,
                targets,
                alpha,
                gamma,
                threshold,
                ignore_index,
                self.num_bins,
                self.score_bins,
            )
        )


class MultilabelMetricsFromStatistics(nn.Module):
    """Multi-label metrics of statistics given as tensors, one per statistics field."""

    forward = define(
        "forward",
        f'''def forward(self, {", ".join(f"{f}: Tensor" for f in MultilabelStatistics._fields)}
) -> MultilabelMetrics:
    """Metrics of (merged) multi-label statistics."""
    return _compute_multilabel(
        MultilabelStatistics({keyword_arguments(MultilabelStatistics._fields, "{}")})
    )
''',
        globals(),
        qualname="MultilabelMetricsFromStatistics.forward",
    )


class RankingOutputs(NamedTuple):
    """A multi-class batch's one-vs-rest histograms and the ranking metrics they give."""

    statistics: RankingStatistics
    metrics: Ranking


class RankingStep(nn.Module):
    """``(logits, labels, ignore_index) -> RankingOutputs``: multi-class AUROC and AP, opt-in.

    Args:
        score_bins: histogram bins, a constant of the graph.
    """

    def __init__(self, score_bins: int = DEFAULT_SCORE_BINS) -> None:
        super().__init__()
        check_score_bins(score_bins)
        self.score_bins = score_bins

    def forward(self, logits: Tensor, labels: Tensor, ignore_index: Tensor) -> RankingOutputs:
        """One batch to its histograms and their metrics."""
        statistics = _update_ranking(logits, labels, ignore_index, self.score_bins)
        return RankingOutputs(statistics, ranking(*statistics))


class RankingStatisticsStep(RankingStep):
    """:class:`RankingStep` without the metrics: the histograms of a chunk of a batch."""

    # the same inputs, fewer outputs (TorchScript reads a type comment only at a line's end)
    def forward(  # type: ignore[override]
        self, logits: Tensor, labels: Tensor, ignore_index: Tensor
    ) -> RankingStatistics:
        """One batch to its histograms."""
        return _update_ranking(logits, labels, ignore_index, self.score_bins)


class RankingFromStatistics(nn.Module):
    """``(positive_histogram, negative_histogram) -> Ranking``, for merged histograms."""

    def forward(self, positive_histogram: Tensor, negative_histogram: Tensor) -> Ranking:
        """Ranking metrics of (merged) histograms."""
        return ranking(positive_histogram, negative_histogram)
