r"""The data behind each figure of a report, from a result's additive statistics (numpy only).

Nothing here is a metric: metrics come computed with the result
(:mod:`focal_eval.report.inputs`). These are the points the figures draw, each a direct read
of the sums, so that a figure and the metrics beside it describe the same samples:

- reliability: per calibration bin :math:`b` (15 equal-width bins of the confidence,
  :math:`(b/B, (b+1)/B]`) the mean confidence :math:`\text{confidence}_b / n_b` and the
  accuracy :math:`\text{correct}_b / n_b` (multi-label: mean :math:`p` and the fraction of
  positive targets), NaN for an empty bin; the expected calibration error is
  :math:`\sum_b n_b |\text{accuracy}_b - \text{confidence}_b| / n`.
- the confusion matrix normalised by row, :math:`M_{ij} / \sum_k M_{ik}` (0 for a class with
  no samples, as scikit-learn's ``confusion_matrix(normalize="true")``), and the largest
  off-diagonal counts.
- per class: the losses per sample of the class (multi-label: per decision of the label).
- ROC and precision-recall curves from the score histograms: a threshold at the lower edge of
  each non-empty bin :math:`h`, from the top, a sample predicted positive when its bin is at or
  above it: :math:`TP_h = \sum_{h' \ge h} P_{h'}`, :math:`FP_h = \sum_{h' \ge h} N_{h'}`. These
  are scikit-learn's ``roc_curve(drop_intermediate=False)`` and ``precision_recall_curve`` of
  the scores rounded down to their bin's edge, so the ROC curve's trapezoids sum to the
  reported AUROC and :math:`\sum_k (R_k - R_{k-1}) P_k` is the reported average precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from focal_eval.report.inputs import Result
from focal_eval.service.core.tasks import MULTICLASS

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Reliability:
    """Per calibration bin: its edges ``(B + 1,)``, count, mean confidence and accuracy."""

    edges: Floats
    count: Ints
    confidence: Floats  # NaN where empty
    accuracy: Floats  # multi-label: the fraction of positive targets; NaN where empty


def reliability(result: Result) -> Reliability:
    """The reliability diagram's bins.

    Example:
        >>> from focal_eval.report.inputs import Result
        >>> stats = {"bin_count": np.array([0, 2]), "bin_confidence_sum": np.array([0.0, 1.5]),
        ...          "bin_correct": np.array([0, 1])}
        >>> bins = reliability(Result("", "multiclass", stats, {}, {}))
        >>> bins.edges.tolist(), bins.confidence.tolist(), bins.accuracy.tolist()
        ([0.0, 0.5, 1.0], [nan, 0.75], [nan, 0.5])
    """
    s = result.statistics
    multiclass = result.task == MULTICLASS
    count = np.asarray(s["bin_count"], dtype=np.int64)
    total = s["bin_confidence_sum"] if multiclass else s["bin_probability_sum"]
    hits = s["bin_correct"] if multiclass else s["bin_positive"]
    return Reliability(
        edges=np.linspace(0.0, 1.0, len(count) + 1),
        count=count,
        confidence=_ratio(np.asarray(total, dtype=np.float64), count),
        accuracy=_ratio(np.asarray(hits, dtype=np.float64), count),
    )


def row_normalised(confusion: npt.NDArray[Any]) -> Floats:
    """Each row of the confusion matrix over its sum; 0 in a row with no samples.

    Cell ``(i, j)`` is the share of class ``i``'s samples predicted as class ``j``.

    Example:
        >>> row_normalised(np.array([[3, 1], [0, 0]])).tolist()
        [[0.75, 0.25], [0.0, 0.0]]
    """
    matrix = np.asarray(confusion, dtype=np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised: Floats = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    return normalised


@dataclass(frozen=True)
class Confusions:
    """Off-diagonal cells of the confusion matrix, largest count first (ties: row, column)."""

    true: Ints
    predicted: Ints
    count: Ints
    rate: Floats  # the cell's share of its true class's samples


def top_confusions(confusion: npt.NDArray[Any], k: int) -> Confusions:
    """The ``k`` most frequent mistakes (fewer when fewer cells are non-zero).

    Example:
        >>> top = top_confusions(np.array([[5, 2, 0], [4, 1, 0], [0, 1, 3]]), 2)
        >>> top.true.tolist(), top.predicted.tolist(), top.count.tolist()
        ([1, 0], [0, 1], [4, 2])
    """
    matrix = np.asarray(confusion, dtype=np.int64)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    flat = off.reshape(-1)
    cells = np.flatnonzero(flat)
    cells = cells[np.argsort(-flat[cells], kind="stable")][:k]  # stable: row-major on ties
    true, predicted = np.divmod(cells, matrix.shape[1])
    rate = row_normalised(matrix)[true, predicted]
    return Confusions(true=true, predicted=predicted, count=flat[cells], rate=rate)


@dataclass(frozen=True)
class PerClass:
    """Per class or label, in order of support (most first; ties by index)."""

    order: Ints  # class (or label) indices
    support: Ints
    precision: Floats
    recall: Floats
    f1: Floats
    focal_loss: Floats  # mean per sample (multi-label: per decision); NaN without any
    cross_entropy: Floats  # the same for cross entropy (multi-label: binary cross entropy)


def per_class(result: Result) -> PerClass:
    """Each class's precision, recall, F1, support and mean losses, sorted by support."""
    s, values = result.statistics, result.per_class
    support = np.asarray(values["support"], dtype=np.int64)
    if result.task == MULTICLASS:
        samples = support
        cross_entropy = s["cross_entropy_sum"]
    else:  # every decision of the label, positive or not
        samples = s["true_positive"] + s["false_positive"] + s["false_negative"]
        samples = samples + s["true_negative"]
        cross_entropy = s["binary_cross_entropy_sum"]
    order = np.argsort(-support, kind="stable")
    return PerClass(
        order=order,
        support=support[order],
        precision=values["precision"][order],
        recall=values["recall"][order],
        f1=values["f1"][order],
        focal_loss=_ratio(np.asarray(s["focal_loss_sum"], dtype=np.float64), samples)[order],
        cross_entropy=_ratio(np.asarray(cross_entropy, dtype=np.float64), samples)[order],
    )


@dataclass(frozen=True)
class Curve:
    """ROC and precision-recall points of one row's histograms, thresholds from the top.

    ROC starts at (0, 0); precision-recall at recall 0, precision 1 (scikit-learn's end point).
    A rate with a zero denominator (no positives, or no negatives) is NaN.
    """

    false_positive_rate: Floats
    true_positive_rate: Floats
    recall: Floats
    precision: Floats


def curve(positive_histogram: npt.NDArray[Any], negative_histogram: npt.NDArray[Any]) -> Curve:
    """The curves of one ``(H,)`` pair of histograms (one class one-vs-rest, or one label).

    Example:
        >>> c = curve(np.array([0, 1, 2]), np.array([2, 1, 0]))
        >>> c.true_positive_rate.tolist(), c.false_positive_rate.tolist()
        ([0.0, 0.6666666666666666, 1.0, 1.0], [0.0, 0.0, 0.3333333333333333, 1.0])
        >>> c.precision.tolist()
        [1.0, 1.0, 0.75, 0.5]
    """
    positives = np.asarray(positive_histogram, dtype=np.float64)[::-1]
    negatives = np.asarray(negative_histogram, dtype=np.float64)[::-1]
    occupied = (positives + negatives) > 0
    true = np.cumsum(positives)[occupied]
    false = np.cumsum(negatives)[occupied]
    recall = _ratio(true, np.full_like(true, positives.sum()))
    false_positive_rate = _ratio(false, np.full_like(false, negatives.sum()))
    return Curve(
        false_positive_rate=np.concatenate([[0.0], false_positive_rate]),
        true_positive_rate=np.concatenate([[0.0], recall]),
        recall=np.concatenate([[0.0], recall]),
        precision=np.concatenate([[1.0], true / (true + false)]),
    )


def differences(whole: Result, part: Result, names: tuple[str, ...]) -> Floats:
    """``part``'s metrics less ``whole``'s, for each of ``names`` (NaN where either is).

    Example:
        >>> a = Result("all", "multiclass", {}, {"accuracy": 0.8}, {})
        >>> b = Result("eu", "multiclass", {}, {"accuracy": 0.75}, {})
        >>> differences(a, b, ("accuracy",)).round(6).tolist()
        [-0.05]
    """
    return np.array([part.metrics[n] - whole.metrics[n] for n in names], dtype=np.float64)


def _ratio(numerator: Floats, denominator: npt.NDArray[Any]) -> Floats:
    """``numerator / denominator``, NaN where the denominator is 0."""
    out = np.full(np.shape(numerator), np.nan)
    ratio: Floats = np.divide(numerator, denominator, out=out, where=np.asarray(denominator) > 0)
    return ratio
