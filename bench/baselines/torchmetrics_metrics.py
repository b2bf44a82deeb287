"""Five of the evaluation step's metrics as a torchmetrics user streams them, for the benchmarks.

Accuracy, balanced accuracy (macro recall), macro F1, Matthews correlation and the expected
calibration error (15 bins) in one ``MetricCollection``, whose shared confusion-matrix state
torchmetrics computes once per update (compute groups). Updated with probabilities, as
:class:`~torchmetrics.classification.MulticlassCalibrationError` needs them.
"""

from __future__ import annotations

from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
    MulticlassRecall,
)


def torchmetrics_collection(num_classes: int, num_bins: int = 15) -> MetricCollection:
    """The five metrics for ``num_classes`` classes, unset."""
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes, average="micro"),
            "balanced_accuracy": MulticlassRecall(num_classes, average="macro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
            "matthews_corrcoef": MulticlassMatthewsCorrCoef(num_classes),
            "expected_calibration_error": MulticlassCalibrationError(num_classes, n_bins=num_bins),
        }
    )


def torchmetrics_update(collection: MetricCollection, logits: Tensor, labels: Tensor) -> None:
    """One streamed batch: softmax, then every metric's update."""
    collection.update(logits.softmax(1), labels)
