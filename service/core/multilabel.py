"""Checks on decoded multi-label and binary arrays, before anything reaches the graph.

A multi-label batch has logits ``(N, L)`` (or ``(N, L, d1, ...)``) and labels of the same
shape, each 0, 1 or ``ignore_index``; a binary batch one logit per sample, ``(N,)`` or
``(N, 1)``, and labels ``(N,)``. Both are scored by the multi-label graph (binary with
``L = 1``). ``alpha`` is one number here (torchvision's: the weight of positives, ``1 - alpha``
for negatives, negative for none), ``threshold`` the probability at or above which a label is
predicted positive.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from focal_eval.service.core.errors import invalid, show
from focal_eval.service.core.tasks import BINARY
from focal_eval.service.core.validation import (
    Batch,
    IntArray,
    check_gamma,
    flat_rows,
)


def multilabel_batch(
    task: str,
    logits: npt.NDArray[Any],
    labels: npt.NDArray[Any],
    alpha: Any,
    gamma: float,
    threshold: Any,
    ignore_index: int,
) -> Batch:
    """Check and convert decoded multi-label (or binary) arrays into a :class:`Batch`.

    Raises:
        RequestError: 422 naming the field: dtype, shape, label values, alpha, threshold
            (non-finite logits are the scorer's to refuse).
    """
    sent = tuple(labels.shape)
    if task == BINARY:  # one logit a sample: the multi-label graph with one label
        if labels.size != len(labels):
            raise invalid(
                f"labels: expected one label a sample, shape [{len(logits)}], to match logits"
                f" {list(logits.shape)}; got {list(sent)}"
            )
        logits = logits.reshape(len(logits), 1)
        labels = labels.reshape(len(labels), 1)
    logits, targets, _ = flat_rows(logits, labels, expected_labels="labels")
    _check_targets(targets, ignore_index)
    parameters = {
        "alpha": check_sigmoid_alpha(alpha),
        "gamma": check_gamma(gamma),
        "threshold": check_threshold(threshold),
        "ignore_index": ignore_index,
    }
    return Batch(task, {"logits": logits, "targets": targets}, parameters, sent)


def check_sigmoid_alpha(alpha: Any) -> float:
    """One number <= 1: the weight of positives (negatives get 1 - alpha); negative: none."""
    if isinstance(alpha, np.ndarray) and alpha.size == 1:
        alpha = alpha.reshape(()).item()
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.floating | np.integer):
        given = alpha.tolist() if isinstance(alpha, np.ndarray) else alpha
        raise invalid(
            "alpha: expected one number for multilabel and binary batches (the weight of"
            f" positives), got {show(given)}"
        )
    if not (math.isfinite(alpha) and alpha <= 1):
        raise invalid(f"alpha: expected a finite number <= 1 (negative: no weighting), got {alpha}")
    return float(alpha)


def check_threshold(threshold: Any) -> float:
    """A probability strictly between 0 and 1."""
    if isinstance(threshold, bool) or not isinstance(
        threshold, int | float | np.floating | np.integer
    ):
        raise invalid(f"threshold: expected a number, got {show(threshold)}")
    if not 0 < threshold < 1:
        raise invalid(f"threshold: expected a number in (0, 1), got {threshold}")
    return float(threshold)


def _check_targets(targets: IntArray, ignore_index: int) -> None:
    bad = (targets != ignore_index) & (targets != 0) & (targets != 1)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise invalid(
            f"labels: {int(bad.sum())} values are neither 0, 1 nor ignore_index ({ignore_index});"
            f" first {int(targets[row, column])} at row {row}, label {column}"
        )
