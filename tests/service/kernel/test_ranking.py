"""The multi-class op with ranking: its histograms against numpy's float64 softmax, binned.

Held out from the export's sweep: C up to 5,000, logits to 1e4, every row ignored, N = 1; and
its evaluation outputs are the multi-class op's, bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tests.service.kernel._fused import IGNORE, assert_counts, near_edges, run_fused, scalar

SCORE_BINS = 100


def run(kind: str, logits: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]) -> Any:
    feeds: dict[str, npt.NDArray[Any]] = {
        "logits": logits,
        "labels": labels,
        "alpha": np.ones(logits.shape[1], np.float32),
        "gamma": scalar(2.0),
        "ignore_index": scalar(IGNORE, np.int64),
    }
    return run_fused(kind, feeds)


def reference(
    logits: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float64], dict[str, npt.NDArray[np.int64]]]:
    x = logits.astype(np.float64)
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    valid = labels != IGNORE
    n, c = x.shape
    own = np.zeros((n, c), bool)
    own[np.arange(n)[valid], labels[valid]] = True
    score = np.minimum((p * SCORE_BINS).astype(int), SCORE_BINS - 1)
    classes = np.broadcast_to(np.arange(c), (n, c))

    def histogram(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        table = np.zeros((c, SCORE_BINS), np.int64)
        np.add.at(table, (classes[mask], score[mask]), 1)
        return table

    negative = valid[:, None] & ~own
    return p, {"positive_histogram": histogram(own), "negative_histogram": histogram(negative)}


@pytest.mark.parametrize(
    ("n", "c", "scale"),
    [(2000, 3, 2.0), (1000, 100, 3.0), (20, 5000, 2.0), (300, 10, 1e4), (1, 4, 1.0)],
)
def test_histograms_equal_a_float64_softmax_binned(n: int, c: int, scale: float) -> None:
    rng = np.random.default_rng(n + c)
    logits = (scale * rng.standard_normal((n, c))).astype(np.float32)
    labels = rng.integers(0, c, n)
    labels[::7] = IGNORE
    p, want = reference(logits, labels)
    moved = near_edges(p[labels != IGNORE], SCORE_BINS)
    got = run("fused_evaluation_ranking", logits, labels)
    for name, table in want.items():
        assert_counts(got[name], table, moved, name)
    for name, value in run("fused_evaluation", logits, labels).items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_every_row_ignored_counts_nothing() -> None:
    logits = np.random.default_rng(2).standard_normal((50, 6)).astype(np.float32)
    got = run("fused_evaluation_ranking", logits, np.full(50, IGNORE))
    assert not got["positive_histogram"].any()
    assert not got["negative_histogram"].any()
