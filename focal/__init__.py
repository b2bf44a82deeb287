"""focal: focal loss (softmax and sigmoid) and a class-balanced evaluation step in PyTorch.

Multi-class (``update`` / ``compute``), multi-label and binary (``update_multilabel`` /
``compute_multilabel``), and one-vs-rest ranking (``update_ranking`` / ``ranking``) share
one contract: per-sample values, additive statistics, metrics from statistics only.
Everything here is TorchScript-compatible; :mod:`focal_eval.focal.graphs` holds the tensor-only
modules that :mod:`export` turns into ONNX / TorchScript / ``torch.export`` artifacts.
"""

try:
    import torch  # noqa: F401
except ModuleNotFoundError as error:  # the server's install: no torch
    raise ModuleNotFoundError(
        "focal_eval.focal needs torch, which is not installed: pip install 'focal-eval[torch]'",
        name="torch",
    ) from error

from focal_eval.focal.evaluator import Evaluator
from focal_eval.focal.functional import sigmoid_focal_loss, softmax_focal_loss
from focal_eval.focal.graphs import (
    EvaluationOutputs,
    EvaluationStatistics,
    EvaluationStatisticsStep,
    EvaluationStep,
    MetricsFromStatistics,
    MultilabelEvaluationOutputs,
    MultilabelEvaluationStatistics,
    MultilabelEvaluationStatisticsStep,
    MultilabelEvaluationStep,
    MultilabelMetricsFromStatistics,
    RankingFromStatistics,
    RankingOutputs,
    RankingStatisticsStep,
    RankingStep,
)
from focal_eval.focal.losses import FocalLoss, SigmoidFocalLoss
from focal_eval.focal.metrics import Metrics, compute
from focal_eval.focal.multilabel import (
    MultilabelPerSample,
    MultilabelStatistics,
    empty_multilabel_statistics,
    merge_multilabel,
    update_multilabel,
)
from focal_eval.focal.multilabel_metrics import MultilabelMetrics, compute_multilabel
from focal_eval.focal.ranking import (
    Ranking,
    RankingStatistics,
    empty_ranking_statistics,
    merge_ranking,
    ranking,
    update_ranking,
)
from focal_eval.focal.statistics import PerSample, Statistics, empty_statistics, merge, update
from focal_eval.focal.weights import class_balanced_weights, inverse_frequency_weights

__all__ = [
    "EvaluationOutputs",
    "EvaluationStatistics",
    "EvaluationStatisticsStep",
    "EvaluationStep",
    "Evaluator",
    "FocalLoss",
    "Metrics",
    "MetricsFromStatistics",
    "MultilabelEvaluationOutputs",
    "MultilabelEvaluationStatistics",
    "MultilabelEvaluationStatisticsStep",
    "MultilabelEvaluationStep",
    "MultilabelMetrics",
    "MultilabelMetricsFromStatistics",
    "MultilabelPerSample",
    "MultilabelStatistics",
    "PerSample",
    "Ranking",
    "RankingFromStatistics",
    "RankingOutputs",
    "RankingStatistics",
    "RankingStatisticsStep",
    "RankingStep",
    "SigmoidFocalLoss",
    "Statistics",
    "class_balanced_weights",
    "compute",
    "compute_multilabel",
    "empty_multilabel_statistics",
    "empty_ranking_statistics",
    "empty_statistics",
    "inverse_frequency_weights",
    "merge",
    "merge_multilabel",
    "merge_ranking",
    "ranking",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "update",
    "update_multilabel",
    "update_ranking",
]
