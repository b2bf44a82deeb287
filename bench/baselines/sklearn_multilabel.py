"""Multi-label metrics as an evaluation script computes them: numpy sigmoid, then scikit-learn.

The metrics of the multi-label graph that scikit-learn has, each from its usual function:
per-label counts, precision / recall / F1 / support, micro / macro / weighted / samples F1,
subset accuracy, Hamming loss, per-label AUROC and average precision (exact, on the
unbinned scores) with their macro and micro averages, log loss (the mean BCE) and Brier
score. Macro AUROC and AP average the per-label values rather than calling scikit-learn
twice, so that the baseline does no work twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn import metrics


def sklearn_multilabel_metrics(
    logits: npt.NDArray[np.float32], targets: npt.NDArray[np.int64], threshold: float = 0.5
) -> dict[str, Any]:
    """The multi-label graph's metrics via scikit-learn (every label needs both classes).

    Example:
        >>> logits = np.array([[2.0, -1.0], [-2.0, 1.0], [1.0, 0.5]], dtype=np.float32)
        >>> targets = np.array([[1, 0], [0, 1], [0, 1]])
        >>> float(sklearn_multilabel_metrics(logits, targets)["hamming_loss"])
        0.16666666666666666
    """
    scores = 1 / (1 + np.exp(-logits.astype(np.float64)))
    predictions = (scores >= threshold).astype(np.int64)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        targets, predictions, zero_division=0
    )
    auroc = metrics.roc_auc_score(targets, scores, average=None)
    average_precision = metrics.average_precision_score(targets, scores, average=None)
    result = {
        "counts": metrics.multilabel_confusion_matrix(targets, predictions),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "auroc": auroc,
        "average_precision": average_precision,
        "macro_auroc": float(np.mean(auroc)),
        "macro_average_precision": float(np.mean(average_precision)),
        "micro_auroc": metrics.roc_auc_score(targets, scores, average="micro"),
        "micro_average_precision": metrics.average_precision_score(
            targets, scores, average="micro"
        ),
        "subset_accuracy": metrics.accuracy_score(targets, predictions),
        "hamming_loss": metrics.hamming_loss(targets, predictions),
        "mean_binary_cross_entropy": metrics.log_loss(targets.ravel(), scores.ravel()),
        "brier_score": metrics.brier_score_loss(targets.ravel(), scores.ravel()),
    }
    for average in ("micro", "macro", "weighted", "samples"):
        result[f"{average}_f1"] = metrics.f1_score(
            targets, predictions, average=average, zero_division=0
        )
    return result
