"""The metrics as an evaluation script computes them: numpy softmax / argmax, then scikit-learn.

The same metrics as the evaluation graph (accuracy, balanced accuracy, per-class precision /
recall / F1 / support, macro and weighted F1, Matthews correlation, confusion matrix, log loss,
Brier score), each from its usual scikit-learn function, as a script that has the logits and
labels in memory would call them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn import metrics


def softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Row-wise softmax in numpy, shifted by the row maximum."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    result: npt.NDArray[np.float32] = shifted / shifted.sum(axis=1, keepdims=True)
    return result


def sklearn_metrics(
    logits: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]
) -> dict[str, Any]:
    """Every metric of the evaluation graph (except the focal-loss ones) via scikit-learn.

    Example:
        >>> logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]], dtype=np.float32)
        >>> float(sklearn_metrics(logits, np.array([0, 1, 1]))["accuracy"])
        0.6666666666666666
    """
    num_classes = logits.shape[1]
    classes = np.arange(num_classes)
    probabilities = softmax(logits)
    predictions = logits.argmax(axis=1)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        labels, predictions, labels=classes, zero_division=0
    )
    return {
        "accuracy": metrics.accuracy_score(labels, predictions),
        "balanced_accuracy": metrics.balanced_accuracy_score(labels, predictions),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "macro_f1": metrics.f1_score(
            labels, predictions, labels=classes, average="macro", zero_division=0
        ),
        "weighted_f1": metrics.f1_score(
            labels, predictions, labels=classes, average="weighted", zero_division=0
        ),
        "matthews_corrcoef": metrics.matthews_corrcoef(labels, predictions),
        "confusion_matrix": metrics.confusion_matrix(labels, predictions, labels=classes),
        "log_loss": metrics.log_loss(labels, probabilities, labels=classes),
        "brier_score": metrics.brier_score_loss(
            labels, probabilities, labels=classes, scale_by_half=False
        ),
    }
