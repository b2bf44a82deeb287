"""What each metric means, which way is better, and which ones a comparison of slices shows.

The definitions restate the module docstrings of :mod:`focal_eval.focal.metrics` (multi-class)
and :mod:`focal_eval.focal.multilabel_metrics` (multi-label and binary, one label) in plain
text for readers of a report; the metrics themselves are computed there, never here.
"""

from __future__ import annotations

from focal_eval.service.core.tasks import BINARY, MULTICLASS, MULTILABEL

_SHARED = {
    "mean_focal_loss": "Mean focal loss per valid sample (multi-label: per label decision).",
    "expected_calibration_error": "Σ_b |correct_b - confidence_b| / n over 15 equal-width"
    " bins of the confidence: the reliability diagram's gaps weighted by their counts.",
    "brier_score": "Mean squared error of the predicted probabilities against the one-hot target.",
    "macro_auroc": "Mean AUROC over the rows (classes one-vs-rest, or labels) where it is"
    " defined, from 100-bin score histograms.",
    "micro_auroc": "AUROC of every row's scores pooled (100-bin score histograms).",
    "macro_average_precision": "Mean average precision over the rows where it is defined.",
    "micro_average_precision": "Average precision of every row's scores pooled.",
}

DEFINITIONS: dict[str, dict[str, str]] = {
    MULTICLASS: {
        "accuracy": "Σ_c M_cc / n: the fraction of valid samples whose top class is the label.",
        "balanced_accuracy": "Mean recall over the classes with support (scikit-learn's"
        " balanced_accuracy_score).",
        "macro_f1": "Mean F1 over the classes that occur as a label or a prediction.",
        "weighted_f1": "Σ_c s_c F1_c / n: F1 weighted by support.",
        "matthews_corrcoef": "Multi-class Matthews correlation (Gorodkin 2004); 0 where undefined.",
        "alpha_weighted_focal_loss": "Σ focal loss / Σ alpha_y: the loss's reduction='mean'.",
        "class_balanced_focal_loss": "Mean over the classes with support of each class's mean"
        " focal loss.",
        "mean_cross_entropy": "Mean -log p_y per valid sample.",
        "precision": "Per class M_cc / Σ_i M_ic: 0 where nothing is predicted as the class.",
        "recall": "Per class M_cc / s_c: 0 where the class has no support.",
        "f1": "Per class 2 M_cc / (s_c + ŝ_c).",
        "support": "Valid samples of the class (s_c, the confusion matrix's row sum).",
        "auroc": "Per class, one-vs-rest AUROC of p(class).",
        "average_precision": "Per class, one-vs-rest average precision of p(class).",
        **_SHARED,
    },
    MULTILABEL: {
        "micro_f1": "F1 of the decisions of every label pooled: 2 Σtp / Σ(2 tp + fp + fn).",
        "macro_f1": "Mean F1 over all labels.",
        "weighted_f1": "F1 weighted by each label's support (positives).",
        "samples_f1": "Mean over samples of each sample's F1 over its labels.",
        "subset_accuracy": "Fraction of samples with every label decided right.",
        "hamming_loss": "Fraction of label decisions that are wrong.",
        "mean_binary_cross_entropy": "Mean binary cross entropy per label decision.",
        "precision": "tp / (tp + fp) at the threshold; 0 where nothing is predicted positive.",
        "recall": "tp / (tp + fn) at the threshold; 0 without positives.",
        "f1": "2 tp / (2 tp + fp + fn) at the threshold.",
        "auroc": "Area under the ROC curve of p (Mann-Whitney, ties half), from 100-bin"
        " score histograms.",
        "average_precision": "Area under the step-wise precision-recall curve of p (as"
        " scikit-learn's average_precision_score), from 100-bin score histograms.",
        "support": "Positive targets (tp + fn).",
        **_SHARED,
    },
}
DEFINITIONS[BINARY] = DEFINITIONS[MULTILABEL]

LOWER_IS_BETTER = frozenset(
    {
        "mean_focal_loss",
        "alpha_weighted_focal_loss",
        "class_balanced_focal_loss",
        "mean_cross_entropy",
        "mean_binary_cross_entropy",
        "expected_calibration_error",
        "brier_score",
        "hamming_loss",
    }
)

COUNTS = frozenset({"support"})  # integers, shown without decimals

# The metrics a table of slices compares with the whole (the first four are also drawn)
KEY_METRICS: dict[str, tuple[str, ...]] = {
    MULTICLASS: (
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "mean_focal_loss",
        "mean_cross_entropy",
        "expected_calibration_error",
        "brier_score",
    ),
    MULTILABEL: (
        "micro_f1",
        "macro_f1",
        "macro_average_precision",
        "mean_focal_loss",
        "subset_accuracy",
        "hamming_loss",
        "expected_calibration_error",
    ),
    BINARY: (
        "f1",
        "average_precision",
        "auroc",
        "mean_focal_loss",
        "precision",
        "recall",
        "expected_calibration_error",
    ),
}


def definition(task: str, name: str) -> str:
    """The definition of ``name`` for ``task``, or an empty string for a metric not listed."""
    return DEFINITIONS[task].get(name, "")
