"""focal: focal loss (softmax and sigmoid) and a class-balanced evaluation step in PyTorch.

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
from focal_eval.focal.graphs import EvaluationOutputs, EvaluationStep, MetricsFromStatistics
from focal_eval.focal.losses import FocalLoss, SigmoidFocalLoss
from focal_eval.focal.metrics import Metrics, compute
from focal_eval.focal.statistics import PerSample, Statistics, empty_statistics, merge, update
from focal_eval.focal.weights import class_balanced_weights, inverse_frequency_weights

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
