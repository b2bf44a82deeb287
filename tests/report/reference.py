"""Independent references for the report's figures: float64 numpy on logits and labels.

Nothing here reads statistics: each value is computed from the raw batch, as the formulas in
focal/ define it, so that a test compares the report's reading of the statistics with what
the samples say.
"""

from __future__ import annotations

import numpy as np

from tests.report._inputs import ALPHA, CALIBRATION_BINS, GAMMA, SCORE_BINS


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def calibration(scores: np.ndarray, hits: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per bin (b/B, (b+1)/B]: count, mean score, mean hit (NaN where empty)."""
    bins = np.clip(np.ceil(scores * CALIBRATION_BINS) - 1, 0, CALIBRATION_BINS - 1).astype(int)
    count = np.bincount(bins, minlength=CALIBRATION_BINS)
    with np.errstate(invalid="ignore"):
        mean_score = np.bincount(bins, scores, CALIBRATION_BINS) / count
        mean_hit = np.bincount(bins, hits.astype(float), CALIBRATION_BINS) / count
    return count, mean_score, mean_hit


def softmax_losses(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: focal loss (alpha none) and cross entropy."""
    p = softmax(logits)[np.arange(len(labels)), labels]
    cross_entropy = -np.log(p)
    return (1 - p) ** GAMMA * cross_entropy, cross_entropy


def sigmoid_losses(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per decision: sigmoid focal loss (alpha 0.25, torchvision's) and binary cross entropy."""
    p = sigmoid(logits)
    p_t = np.where(targets == 1, p, 1 - p)
    cross_entropy = -np.log(p_t)
    alpha_t = np.where(targets == 1, ALPHA, 1 - ALPHA)
    return alpha_t * (1 - p_t) ** GAMMA * cross_entropy, cross_entropy


def rounded(scores: np.ndarray) -> np.ndarray:
    """Scores rounded down to the lower edge of their ranking bin [h/H, (h+1)/H)."""
    return np.asarray(np.minimum(np.floor(scores * SCORE_BINS), SCORE_BINS - 1) / SCORE_BINS)
