"""Samples on an edge: the one looseness of the parity check, and how far it reaches.

Runtimes round ``exp``, ``sigmoid`` and ``softmax`` differently in the last bits (onnxruntime's
float32 sigmoid and softmax differ from torch's by up to 1.8e-7 and 2.4e-7 on the sweeps), so a
probability within that of an edge may fall on either side of it in different runtimes: an
interior edge ``b / B`` of the calibration bins or of the score bins, or the decision threshold.
Each such sample moves at most one count from one cell to a neighbour; the rules here bound
what that does to each output, from the number of such samples (:data:`EDGE_WIDTH` of an edge,
in the eager probabilities) and the reference's own counts. Usually there are none, and the
check is exact.

A rule maps ``(inputs, reference outputs by name)`` to ``{output: (count slack, extra atol)}``:
the total absolute count difference allowed, and a float tolerance added to ``atol`` (a scalar,
or an array of the output's shape).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from focal_eval.export.sweeps import Inputs

EDGE_WIDTH = 1e-6  # in probability: over four times the largest difference measured

Slack = tuple[int, float | np.ndarray]
SlackRule = Callable[[Inputs, dict[str, np.ndarray]], dict[str, Slack]]


def no_slack(inputs: Inputs, reference: dict[str, np.ndarray]) -> dict[str, Slack]:
    """Every output exact within tolerance (graphs fed eager statistics: nothing is binned)."""
    return {}


def near_edges(probability: np.ndarray, bins: int) -> np.ndarray:
    """Where ``probability`` lies within :data:`EDGE_WIDTH` of an interior edge ``b / bins``."""
    p = probability.astype(np.float64)
    edge = np.round(p * bins)
    # 0 and 1 bound the first and last bins: nothing lies beyond them
    return (edge > 0) & (edge < bins) & (np.abs(p - edge / bins) < EDGE_WIDTH)


def multiclass_slack(inputs: Inputs, reference: dict[str, np.ndarray]) -> dict[str, Slack]:
    """The evaluation step: samples whose confidence is near a calibration-bin edge."""
    near = near_edges(reference["confidence"], len(reference["bin_count"]))
    valid = int(reference["bin_count"].sum())
    return _calibration(int(near.sum()), valid, ("bin_count", "bin_correct"), "bin_confidence_sum")


def multilabel_slack(inputs: Inputs, reference: dict[str, np.ndarray]) -> dict[str, Slack]:
    """The multi-label step: decisions near a calibration edge, a score edge, the threshold."""
    logits, targets, _, _, threshold, ignore_index = inputs
    with torch.no_grad():
        probability = torch.sigmoid(logits.float()).numpy()
    valid = (targets != ignore_index).numpy()
    positive = (targets == 1).numpy() & valid
    negative = (targets == 0).numpy() & valid
    calibration = near_edges(probability, len(reference["bin_count"])) & valid
    at_threshold = valid & (
        np.abs(probability.astype(np.float64) - float(threshold.float())) < EDGE_WIDTH
    )
    scores = near_edges(probability, reference["positive_histogram"].shape[1]) & valid
    return (
        _calibration(
            int(calibration.sum()),
            int(valid.sum()),
            ("bin_count", "bin_positive"),
            "bin_probability_sum",
        )
        | _threshold(at_threshold & positive, at_threshold & negative, reference)
        | _scores(scores & positive, scores & negative, reference)
    )


def ranking_slack(inputs: Inputs, reference: dict[str, np.ndarray]) -> dict[str, Slack]:
    """The one-vs-rest ranking step: class probabilities near a score-bin edge."""
    logits, labels, ignore_index = inputs
    with torch.no_grad():
        probability = torch.softmax(logits.float(), dim=1).numpy()
    valid = (labels != ignore_index).numpy()[:, None]
    positive = (np.arange(logits.shape[1])[None, :] == labels.numpy()[:, None]) & valid
    near = near_edges(probability, reference["positive_histogram"].shape[1])
    return _scores(near & positive, near & valid & ~positive, reference)


def _calibration(
    near: int, decisions: int, counts: tuple[str, str], total: str
) -> dict[str, Slack]:
    """Calibration bins: each of ``near`` samples may move one bin.

    Counts move by ``2 near`` in all, a bin's sum of probabilities by ``near``, the ECE by
    ``2 near / decisions``.
    """
    return {
        counts[0]: (2 * near, 0.0),
        counts[1]: (2 * near, 0.0),
        total: (0, float(near)),
        "expected_calibration_error": (0, 2.0 * near / max(decisions, 1)),
    }


def _threshold(
    positive: np.ndarray, negative: np.ndarray, reference: dict[str, np.ndarray]
) -> dict[str, Slack]:
    """Positives (negatives) at the threshold may move between TP and FN (FP and TN)."""
    k_positive, k_negative = positive.sum(0), negative.sum(0)  # per label
    k = k_positive + k_negative
    total = int(k.sum())
    moved_positive, moved_negative = int(k_positive.sum()), int(k_negative.sum())
    tp, fp, fn, tn = (
        reference[name].astype(np.float64)
        for name in ("true_positive", "false_positive", "false_negative", "true_negative")
    )
    support = tp + fn
    f1 = ratio_bound(2 * k_positive, k, 2 * tp + fp + fn)
    samples = max(int(reference["samples"]), 1)
    decisions = max(int((tp + fp + fn + tn).sum()), 1)
    return {
        "label_errors": (total, 0.0),
        "true_positive": (moved_positive, 0.0),
        "false_negative": (moved_positive, 0.0),
        "false_positive": (moved_negative, 0.0),
        "true_negative": (moved_negative, 0.0),
        "exact_matches": (total, 0.0),  # a sample's exactness changes with each move at most
        "sample_f1_sum": (0, float(total)),  # a sample's F1 stays in [0, 1]
        "samples_f1": (0, total / samples),
        "subset_accuracy": (0, total / samples),
        "hamming_loss": (0, total / decisions),
        "precision": (0, ratio_bound(k_positive, k, tp + fp)),
        "recall": (0, ratio_bound(k_positive, np.zeros_like(k), support)),
        "f1": (0, f1),
        "micro_f1": (0, float(ratio_bound(2 * moved_positive, total, (2 * tp + fp + fn).sum()))),
        "macro_f1": (0, float(f1.mean()) if f1.size else 0.0),
        "weighted_f1": (0, _weighted_mean(f1, support)),
    }


def _scores(
    positive: np.ndarray, negative: np.ndarray, reference: dict[str, np.ndarray]
) -> dict[str, Slack]:
    """Samples near a score edge may move one bin, in their row (label or class).

    Per row, a positive moved one bin changes the Mann-Whitney AUROC by at most ``1 / P`` and
    a negative by ``1 / N``; in AP a positive at most ``2 / P`` (its own term and one
    threshold's precision), a negative ``1 / P``. Macro averages take the mean of the rows'
    bounds, micro ones the pooled counts.
    """
    moved_positive, moved_negative = positive.sum(0), negative.sum(0)  # per row
    positives = reference["positive_histogram"].sum(1).astype(np.float64)
    negatives = reference["negative_histogram"].sum(1).astype(np.float64)
    auroc = _auroc_bound(moved_positive, moved_negative, positives, negatives)
    average_precision = _average_precision_bound(moved_positive, moved_negative, positives)
    pooled = [x.sum(keepdims=True) for x in (moved_positive, moved_negative, positives, negatives)]
    return {
        "positive_histogram": (2 * int(pooled[0][0]), 0.0),
        "negative_histogram": (2 * int(pooled[1][0]), 0.0),
        "auroc": (0, auroc),
        "average_precision": (0, average_precision),
        "macro_auroc": (0, _mean_where(auroc, (positives > 0) & (negatives > 0))),
        "macro_average_precision": (0, _mean_where(average_precision, positives > 0)),
        "micro_auroc": (0, float(_auroc_bound(*pooled)[0])),
        "micro_average_precision": (0, float(_average_precision_bound(*pooled[:3])[0])),
    }


def ratio_bound(
    moved: np.ndarray | int, moved_denominator: np.ndarray | int, denominator: np.ndarray | float
) -> np.ndarray:
    r"""Most a ratio :math:`a / b \in [0, 1]` (0 for :math:`b = 0`) moves with :math:`a, b`.

    When :math:`a \le b` move by at most :math:`u` = ``moved`` and :math:`v` =
    ``moved_denominator``: :math:`|a'/b' - a/b| = |b\,\delta a - a\,\delta b| / (b b') \le
    (u + v) / (b - v)`; 1 where :math:`b - v \le 0`.
    """
    u, v, b = (np.asarray(x, dtype=np.float64) for x in (moved, moved_denominator, denominator))
    room = b - v
    bound = np.divide(u + v, room, out=np.ones(np.broadcast(u, room).shape), where=room > 0)
    return np.minimum(bound, 1.0)


def _auroc_bound(
    moved_positive: np.ndarray,
    moved_negative: np.ndarray,
    positives: np.ndarray,
    negatives: np.ndarray,
) -> np.ndarray:
    defined = (positives > 0) & (negatives > 0)
    bound = moved_positive / np.where(defined, positives, 1.0) + moved_negative / np.where(
        defined, negatives, 1.0
    )
    return np.where(defined, np.minimum(bound, 1.0), 0.0)


def _average_precision_bound(
    moved_positive: np.ndarray, moved_negative: np.ndarray, positives: np.ndarray
) -> np.ndarray:
    defined = positives > 0
    bound = (2 * moved_positive + moved_negative) / np.where(defined, positives, 1.0)
    return np.where(defined, np.minimum(bound, 1.0), 0.0)


def _mean_where(values: np.ndarray, where: np.ndarray) -> float:
    count = int(where.sum())
    return float(values[where].sum() / count) if count else 0.0


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    total = float(weights.sum())
    return float((values * weights).sum() / total) if total > 0 else 0.0
