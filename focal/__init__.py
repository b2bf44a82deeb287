"""focal: focal loss (softmax and sigmoid) and a class-balanced evaluation step in PyTorch.

Everything here is TorchScript-compatible; :mod:`focal.graphs` holds the tensor-only modules
that :mod:`export` turns into ONNX / TorchScript / ``torch.export`` artifacts.
"""

from focal.evaluator import Evaluator
from focal.functional import sigmoid_focal_loss, softmax_focal_loss
from focal.graphs import EvaluationOutputs, EvaluationStep, MetricsFromStatistics
from focal.losses import FocalLoss, SigmoidFocalLoss
from focal.metrics import Metrics, compute
from focal.statistics import PerSample, Statistics, empty_statistics, merge, update
from focal.weights import class_balanced_weights, inverse_frequency_weights

__all__ = [
    "EvaluationOutputs",
    "EvaluationStep",
    "Evaluator",
    "FocalLoss",
    "Metrics",
    "MetricsFromStatistics",
    "PerSample",
    "SigmoidFocalLoss",
    "Statistics",
    "class_balanced_weights",
    "compute",
    "empty_statistics",
    "inverse_frequency_weights",
    "merge",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "update",
]
