"""Ranking from score histograms, focal_eval.focal.ranking, against scikit-learn."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.preprocessing import label_binarize

from focal_eval.focal import (
    Ranking,
    empty_ranking_statistics,
    merge_ranking,
    ranking,
    update_multilabel,
    update_ranking,
)
from focal_eval.focal.ranking import score_bin
from tests.focal._inputs import IGNORE, multiclass_batch
from tests.focal.reference import binned_scores64


def exact(expected: float) -> Any:
    """``pytest.approx`` to 1e-12 (NaN equal to NaN): float64 sums in another order."""
    return pytest.approx(expected, rel=0, abs=1e-12, nan_ok=True)


def edge_neighbours(score_bins: int) -> np.ndarray:
    """0, 1, and the float32 values nearest to each edge h/H: the three below, it, three above."""
    values = [np.float32(0.0), np.float32(1.0)]
    for h in range(1, score_bins + 1):
        edge = np.float32(h / score_bins)
        below, above = edge, edge
        values.append(edge)
        for _ in range(3):
            below = np.nextafter(below, np.float32(0.0))
            above = np.nextafter(above, np.float32(2.0))
            values.extend([below, above])
    return np.clip(np.array(values, dtype=np.float32), 0.0, 1.0)


@pytest.mark.parametrize("score_bins", [1, 3, 10, 100, 999, 1000])
def test_score_bin_is_floor_of_p_times_h_at_every_edge(score_bins: int) -> None:
    """The float32 product p * H may round up onto the edge (fl(0.08999999 * 100) = 9)."""
    scores = edge_neighbours(score_bins)
    expected = binned_scores64(scores, score_bins) * score_bins
    got = score_bin(torch.from_numpy(scores), score_bins).numpy()
    np.testing.assert_array_equal(got, np.rint(expected).astype(np.int64))


def samples_of(histogram: np.ndarray) -> np.ndarray:
    """Bin h repeated ``histogram[h]`` times: the rounded scores (in units of 1/H)."""
    return np.repeat(np.arange(len(histogram)), histogram)


def sklearn_row(positives: np.ndarray, negatives: np.ndarray) -> tuple[float, float]:
    """sklearn's AUROC and AP of one row's samples; NaN where the histograms leave it undefined
    (sklearn raises or warns there): no positives, or for AUROC no negatives."""
    scores = np.concatenate([samples_of(positives), samples_of(negatives)])
    labels = np.concatenate([np.ones(positives.sum()), np.zeros(negatives.sum())])
    if positives.sum() == 0:
        return math.nan, math.nan
    average_precision = average_precision_score(labels, scores)
    if negatives.sum() == 0:
        return math.nan, average_precision
    return roc_auc_score(labels, scores), average_precision


def assert_ranking_equals_sklearn(positive: np.ndarray, negative: np.ndarray) -> Ranking:
    """Per row, macro (mean over the defined rows) and micro (the pooled samples)."""
    result = ranking(torch.from_numpy(positive), torch.from_numpy(negative))
    rows = np.array([sklearn_row(p, n) for p, n in zip(positive, negative, strict=True)])
    np.testing.assert_allclose(result.auroc.numpy(), rows[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.average_precision.numpy(), rows[:, 1], rtol=0, atol=1e-12)
    for got, column in [(result.macro_auroc, 0), (result.macro_average_precision, 1)]:
        defined = rows[~np.isnan(rows[:, column]), column]
        expected = defined.mean() if len(defined) else math.nan
        assert got.item() == exact(expected)
    micro = sklearn_row(positive.sum(0), negative.sum(0))
    assert result.micro_auroc.item() == exact(micro[0])
    assert result.micro_average_precision.item() == exact(micro[1])
    return result


@settings(max_examples=100, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 12)),
    seed=st.integers(0, 2**31),
    high=st.sampled_from([1, 3, 50]),
)
def test_ranking_of_histograms_equals_sklearn_on_their_samples(
    shape: tuple[int, int], seed: int, high: int
) -> None:
    """Every pair in one bin is a tie, counted half by ``roc_auc_score`` (Mann-Whitney)."""
    rng = np.random.default_rng(seed)
    positive = rng.integers(0, high + 1, shape) * (rng.random(shape) < 0.6)
    negative = rng.integers(0, high + 1, shape) * (rng.random(shape) < 0.6)
    assert_ranking_equals_sklearn(positive, negative)


def test_ties_count_half_and_undefined_rows_are_nan() -> None:
    positive = np.array([[0, 3, 0], [0, 0, 0], [1, 0, 2], [0, 0, 0]])
    negative = np.array([[0, 2, 0], [1, 4, 0], [0, 0, 0], [0, 0, 0]])
    result = assert_ranking_equals_sklearn(positive, negative)
    assert result.auroc[0].item() == 0.5  # every pair tied
    assert result.average_precision[0].item() == 0.6  # the prevalence of the only threshold
    assert result.average_precision[2].item() == 1.0  # no negatives
    assert torch.isnan(result.auroc[1:]).all()
    empty = ranking(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5, dtype=torch.long))
    assert all(torch.isnan(value).all() for value in empty)


def one_vs_rest(labels: np.ndarray, c: int) -> np.ndarray:
    """``label_binarize``'s indicator matrix (two columns for C = 2, where it gives one)."""
    binary: np.ndarray = label_binarize(labels, classes=list(range(c)))
    return np.hstack([1 - binary, binary]) if c == 2 else binary


@pytest.mark.parametrize("score_bins", [1, 10, 100])
@pytest.mark.parametrize(
    ("seed", "n", "c"),
    [
        pytest.param(0, 300, 2, id="binary"),
        pytest.param(1, 400, 3, id="three"),
        pytest.param(2, 500, 10, id="ten"),
    ],
)
def test_one_vs_rest_ranking_equals_sklearn(score_bins: int, seed: int, n: int, c: int) -> None:
    """Against sklearn on ``label_binarize(y)`` and the softmax probabilities (torch's, float32)
    rounded down to their bin's lower edge; average None, macro and micro."""
    logits, labels = multiclass_batch(seed, n, c)
    stats = update_ranking(logits, labels, score_bins=score_bins)
    result = ranking(*stats)
    valid = labels.numpy() != IGNORE
    y = one_vs_rest(labels.numpy()[valid], c)
    scores = binned_scores64(torch.softmax(logits, dim=1).numpy()[valid], score_bins)
    assert stats.positive_histogram.sum().item() == valid.sum()
    assert stats.negative_histogram.sum().item() == valid.sum() * (c - 1)
    expected = roc_auc_score(y, scores, average=None)
    np.testing.assert_allclose(result.auroc.numpy(), expected, rtol=0, atol=1e-12)
    expected = average_precision_score(y, scores, average=None)
    np.testing.assert_allclose(result.average_precision.numpy(), expected, rtol=0, atol=1e-12)
    for average in ["macro", "micro"]:
        expected = roc_auc_score(y, scores, average=average)
        assert getattr(result, f"{average}_auroc").item() == exact(expected)
        expected = average_precision_score(y, scores, average=average)
        value = getattr(result, f"{average}_average_precision").item()
        assert value == exact(expected)


def test_a_class_without_samples_is_nan_and_left_out_of_macro() -> None:
    logits, labels = multiclass_batch(3, 200, 4)
    labels[labels == 2] = 0
    result = ranking(*update_ranking(logits, labels))
    assert math.isnan(result.auroc[2].item())
    assert math.isnan(result.average_precision[2].item())
    defined = result.auroc[[0, 1, 3]]
    assert result.macro_auroc.item() == exact(defined.mean().item())


def normal_logits(
    seed: int, n: int, prevalence: float, shift: float = 1.0, spread: float = 1.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """A reasonable model's logits: positives ~ N(+shift, spread), negatives ~ N(-shift, spread)."""
    rng = np.random.default_rng(seed)
    targets = (rng.random(n) < prevalence).astype(np.int64)
    logits = rng.normal(shift * (2 * targets - 1), spread).astype(np.float32)
    return torch.from_numpy(logits), torch.from_numpy(targets)


def beta_logits(
    seed: int, n: int, prevalence: float, a: float, b: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ~ Beta(a, b) for positives and Beta(b, a) for negatives, as logits."""
    rng = np.random.default_rng(seed)
    targets = (rng.random(n) < prevalence).astype(np.int64)
    p = np.where(targets == 1, rng.beta(a, b, n), rng.beta(b, a, n)).clip(1e-6, 1 - 1e-6)
    return torch.from_numpy(np.log(p / (1 - p)).astype(np.float32)), torch.from_numpy(targets)


REALISTIC = [
    normal_logits(0, 1_000, 0.5),
    normal_logits(1, 10_000, 0.1),
    normal_logits(2, 10_000, 0.5),
    normal_logits(3, 100_000, 0.01),
    normal_logits(4, 10_000, 0.3, shift=4.0, spread=2.0),  # confident: scores pile up at 0, 1
    beta_logits(5, 10_000, 0.5, 5.0, 2.0),
    beta_logits(6, 10_000, 0.05, 5.0, 2.0),
    beta_logits(7, 10_000, 0.3, 2.0, 1.0),
    beta_logits(8, 10_000, 0.5, 1.2, 1.0),
]


def one_row_differences(
    positive: torch.Tensor, negative: torch.Tensor, targets: np.ndarray, scores: np.ndarray
) -> tuple[float, float]:
    """|binned - exact| of AUROC and AP for one row; asserts the AUROC bound."""
    result = ranking(positive.unsqueeze(0), negative.unsqueeze(0))
    auroc = abs(result.auroc.item() - roc_auc_score(targets, scores))
    pairs = positive.double().sum() * negative.double().sum()
    assert auroc <= 0.5 * (positive.double() * negative).sum().item() / pairs.item() + 1e-12
    average_precision = result.average_precision.item() - average_precision_score(targets, scores)
    return auroc, abs(average_precision)


def test_binned_ranking_is_close_to_exact_on_realistic_scores() -> None:
    """H = 100 against sklearn on the unrounded float32 probabilities.

    A positive-negative pair in different bins is ordered alike by both; one within a bin counts
    1/2 binned and 0, 1/2 or 1 exactly: |binned - exact AUROC| <= 1/2 sum_h P_h N_h / (P N).
    AP has no such bound. Worst measured over these cases: AUROC 1.2e-4 (binary), 4.3e-4 (the
    one-vs-rest classes, whose probabilities crowd the low bins); AP 7.1e-3, always lower.
    """
    worst_auroc = worst_average_precision = 0.0
    for logits, targets in REALISTIC:
        _, stats = update_multilabel(logits, targets, score_bins=100)
        scores = torch.sigmoid(logits).numpy()
        auroc, average_precision = one_row_differences(
            stats.positive_histogram[0], stats.negative_histogram[0], targets.numpy(), scores
        )
        worst_auroc = max(worst_auroc, auroc)
        worst_average_precision = max(worst_average_precision, average_precision)
    logits, labels = multiclass_batch(9, 20_000, 5, scale=1.5, ignore_fraction=0.0)
    histograms = update_ranking(logits, labels, score_bins=100)
    probabilities = torch.softmax(logits, dim=1).numpy()
    for k in range(5):
        auroc, average_precision = one_row_differences(
            histograms.positive_histogram[k],
            histograms.negative_histogram[k],
            (labels.numpy() == k).astype(np.int64),
            probabilities[:, k],
        )
        worst_auroc = max(worst_auroc, auroc)
        worst_average_precision = max(worst_average_precision, average_precision)
    assert worst_auroc < 1e-3
    assert worst_average_precision < 1.5e-2


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(2, 80),
    c=st.integers(2, 8),
    split=st.floats(0.0, 1.0),
    ignore_fraction=st.sampled_from([0.0, 0.3, 1.0]),
    score_bins=st.sampled_from([1, 7, 100]),
)
def test_merged_histograms_equal_histograms_of_concatenation(
    seed: int, n: int, c: int, split: float, ignore_fraction: float, score_bins: int
) -> None:
    logits, labels = multiclass_batch(seed, n, c, ignore_fraction=ignore_fraction)
    k = int(split * n)
    merged = merge_ranking(
        update_ranking(logits[:k], labels[:k], score_bins=score_bins),
        update_ranking(logits[k:], labels[k:], score_bins=score_bins),
    )
    whole = update_ranking(logits, labels, score_bins=score_bins)
    for name, a, b in zip(whole._fields, merged, whole, strict=True):
        assert torch.equal(a, b), name
    for name, a, b in zip(Ranking._fields, ranking(*merged), ranking(*whole), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=name)


def test_empty_histograms_are_zero_and_the_identity_of_merge() -> None:
    logits, labels = multiclass_batch(4, 50, 3)
    stats = update_ranking(logits, labels, score_bins=20)
    empty = empty_ranking_statistics(3, 20)
    for name, zero, value in zip(stats._fields, empty, stats, strict=True):
        assert (zero.dtype, zero.shape) == (value.dtype, value.shape), name
        assert not zero.any(), name
    for merged in [merge_ranking(empty, stats), merge_ranking(stats, empty)]:
        assert all(torch.equal(a, b) for a, b in zip(merged, stats, strict=True))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_logits_are_ranked_in_float32(dtype: torch.dtype) -> None:
    logits, labels = multiclass_batch(5, 200, 4, scale=4.0)
    half = logits.to(dtype)
    got = update_ranking(half, labels, score_bins=50)
    expected = update_ranking(half.float(), labels, score_bins=50)
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
