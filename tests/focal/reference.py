"""Independent float64 numpy references for the tests: written from the definitions, not
from focal/'s code paths (no log-sum-exp tricks: float64 sums of probabilities instead)."""

from __future__ import annotations

import numpy as np


def softmax64(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs


def log_softmax64(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return log_probs


def one_minus_probs64(p: np.ndarray) -> np.ndarray:
    """1 - p_k as the float64 sum of the other classes' probabilities (no cancellation)."""
    others = 1.0 - np.eye(p.shape[1])
    result: np.ndarray = np.einsum("nj,kj->nk", p, others)
    return result


def focal_loss64(
    logits: np.ndarray,
    labels: np.ndarray,
    alpha: np.ndarray | None,
    gamma: float,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> np.ndarray:
    """Per-sample softmax focal loss, sum_k q_k alpha_k (1 - p_k)^gamma (-log p_k); 0 if ignored."""
    n, c = logits.shape
    valid = labels != ignore_index
    safe = np.where(valid, labels, 0)
    q = np.full((n, c), label_smoothing / c)
    q[np.arange(n), safe] += 1.0 - label_smoothing
    weights = np.ones(c) if alpha is None else np.broadcast_to(np.asarray(alpha, np.float64), (c,))
    p = softmax64(logits)
    terms = q * weights * one_minus_probs64(p) ** gamma * -log_softmax64(logits)
    return np.where(valid, terms.sum(axis=1), 0.0)


def sigmoid_focal_loss64(
    logits: np.ndarray, targets: np.ndarray, alpha: float, gamma: float
) -> np.ndarray:
    """Per-element sigmoid focal loss in float64 from the definition with soft targets."""
    x = logits.astype(np.float64)
    t = targets.astype(np.float64)
    log_p = -np.logaddexp(0.0, -x)
    log_1mp = -np.logaddexp(0.0, x)
    bce = -(t * log_p + (1.0 - t) * log_1mp)
    one_minus_pt = t * np.exp(log_1mp) + (1.0 - t) * np.exp(log_p)
    loss = bce * one_minus_pt**gamma
    if alpha >= 0:
        loss = (alpha * t + (1.0 - alpha) * (1.0 - t)) * loss
    return loss


def expected_calibration_error64(
    confidence: np.ndarray, correct: np.ndarray, num_bins: int
) -> float:
    """ECE over bins (b/B, (b+1)/B], written as a loop over bins."""
    total = 0.0
    for b in range(num_bins):
        low, high = b / num_bins, (b + 1) / num_bins
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - confidence[in_bin].mean())
            total += gap * in_bin.sum() / len(confidence)
    return total


def binned_scores64(scores: np.ndarray, score_bins: int) -> np.ndarray:
    """Each score rounded down to its bin's lower edge, floor(p H) / H (p = 1 in the last bin),
    in float64, where the product of a float32 score and H is exact."""
    h = np.minimum(np.floor(scores.astype(np.float64) * score_bins), score_bins - 1)
    rounded: np.ndarray = h / score_bins
    return rounded


def filled_indicators(
    targets: np.ndarray, predicted: np.ndarray, ignore_index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indicator matrices for scikit-learn, which cannot skip single elements.

    An ignored element becomes target 0, prediction 0: a true negative, which changes no TP, FP
    or FN and no sample's F1 or exactness. Returns ``(y_true, y_pred, rows)``, ``rows`` the
    samples with at least one element not ignored (the others are no samples).
    """
    valid = targets != ignore_index
    y_true = np.where(valid, targets, 0)
    y_pred = np.where(valid, predicted, 0).astype(np.int64)
    rows = valid.any(axis=1)
    return y_true[rows], y_pred[rows], rows
