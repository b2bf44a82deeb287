"""Every ValueError path, with its message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from focal_eval.focal import (
    EvaluationStep,
    Evaluator,
    FocalLoss,
    MultilabelEvaluationStep,
    RankingStep,
    SigmoidFocalLoss,
    class_balanced_weights,
    compute,
    compute_multilabel,
    empty_multilabel_statistics,
    empty_ranking_statistics,
    empty_statistics,
    inverse_frequency_weights,
    merge,
    merge_multilabel,
    merge_ranking,
    sigmoid_focal_loss,
    softmax_focal_loss,
    update,
    update_multilabel,
    update_ranking,
)

X = torch.randn(4, 3)
Y = torch.tensor([0, 1, 2, -100])


def bad_stats() -> Any:
    stats = empty_statistics(3)
    return stats._replace(focal_loss_sum=torch.zeros(4, dtype=torch.float64))


CASES: list[Any] = [
    (
        lambda: softmax_focal_loss(X, Y, gamma=-1.0),
        r"Expected argument `gamma` to be a finite float >= 0, but got -1.0",
    ),
    (
        lambda: softmax_focal_loss(X, Y, gamma=float("nan")),
        r"`gamma` to be a finite float >= 0, but got nan",
    ),
    (
        lambda: softmax_focal_loss(X, Y, label_smoothing=1.0),
        r"Expected argument `label_smoothing` to be a float in \[0, 1\), but got 1.0",
    ),
    (
        lambda: softmax_focal_loss(X, Y, reduction="avg"),
        r"Expected argument `reduction` to be one of \['none', 'mean', 'sum'\], but got 'avg'",
    ),
    (
        lambda: softmax_focal_loss(X, Y, normalization="n"),
        r"Expected argument `normalization` to be one of \['weight', 'valid'\], but got 'n'",
    ),
    (
        lambda: softmax_focal_loss(X, Y, torch.ones(4)),
        r"Expected argument `alpha` to have shape \(3,\), but got shape \[4\]",
    ),
    (
        lambda: softmax_focal_loss(X, Y, torch.ones(1, 3)),
        r"Expected argument `alpha` to have shape \(3,\), but got shape \[1, 3\]",
    ),
    (
        lambda: softmax_focal_loss(X, Y, torch.tensor([1.0, -1.0, 1.0])),
        r"Expected argument `alpha` to hold finite values >= 0",
    ),
    (
        lambda: softmax_focal_loss(X, Y, torch.tensor([1.0, float("inf"), 1.0])),
        r"Expected argument `alpha` to hold finite values >= 0",
    ),
    (
        lambda: softmax_focal_loss(X, Y, torch.tensor([1, 2, 3])),
        r"Expected argument `alpha` to be a floating point tensor, but got dtype torch.int64",
    ),
    (
        lambda: softmax_focal_loss(X.long(), Y),
        r"Expected `input` to be a floating point tensor, but got dtype torch.int64",
    ),
    (
        lambda: softmax_focal_loss(torch.randn(4), Y),
        r"Expected `input` to have shape \(N, C\) or \(N, C, d1, ..., dk\), but got shape \[4\]",
    ),
    (
        lambda: softmax_focal_loss(torch.randn(4, 1), Y),
        r"Expected `input` to have at least 2 classes \(dimension 1\), but got 1",
    ),
    (
        lambda: softmax_focal_loss(X, Y.float()),
        r"Expected `target` to be an integer tensor, but got dtype torch.float32",
    ),
    (
        lambda: softmax_focal_loss(X, Y[:3]),
        r"Expected `target` to have shape \[4\], but got shape \[3\]",
    ),
    (
        lambda: softmax_focal_loss(X, torch.tensor([0, 1, 3, 0])),
        r"Expected `target` values in \[0, 3\) or equal to ignore_index \(-100\), but found 3",
    ),
    (
        lambda: softmax_focal_loss(X, torch.tensor([0, -1, 2, 0])),
        r"Expected `target` values in \[0, 3\) or equal to ignore_index \(-100\), but found -1",
    ),
    (
        lambda: FocalLoss(gamma=-0.5),
        r"Expected argument `gamma` to be a finite float >= 0, but got -0.5",
    ),
    (
        lambda: FocalLoss(alpha=[1.0, 2.0])(X, Y),
        r"Expected argument `alpha` to have shape \(3,\), but got shape \[2\]",
    ),
    (
        lambda: sigmoid_focal_loss(X, X, alpha=1.5),
        r"Expected argument `alpha` to be <= 1 \(negative turns it off\), but got 1.5",
    ),
    (
        lambda: sigmoid_focal_loss(X, X.abs(), gamma=-2.0),
        r"Expected argument `gamma` to be a finite float >= 0, but got -2.0",
    ),
    (
        lambda: sigmoid_focal_loss(X, X[:2].clamp(0, 1)),
        r"Expected `target` to have the shape of `input` \[4, 3\], but got \[2, 3\]",
    ),
    (lambda: sigmoid_focal_loss(X, X * 0 + 2), r"Expected `target` values in \[0, 1\]"),
    (
        lambda: sigmoid_focal_loss(X.long(), X),
        r"Expected `input` to be a floating point tensor, but got dtype torch.int64",
    ),
    (lambda: SigmoidFocalLoss(reduction="x"), r"Expected argument `reduction` to be one of"),
    (
        lambda: update(X, Y, num_bins=0),
        r"Expected argument `num_bins` to be an integer >= 1, but got 0",
    ),
    (
        lambda: update(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long)),
        r"Expected `logits` to have shape \(N, C\), but got \[2, 3, 4\]",
    ),
    (
        lambda: update(torch.tensor([[0.0, float("nan"), 1.0]]), torch.tensor([0])),
        r"Expected `logits` to hold only finite values, but found NaN or inf",
    ),
    (
        lambda: update(X, Y, torch.ones(3, 1)),
        r"Expected argument `alpha` to have shape \(3,\), but got shape \[3, 1\]",
    ),
    (
        lambda: update(X, Y, torch.tensor(1.0)),
        r"Expected argument `alpha` to have shape \(3,\), but got shape \[\]",
    ),
    (
        lambda: merge(empty_statistics(3), empty_statistics(4)),
        r"Expected statistics of the same shape, but got `confusion_matrix` of shape \[3, 3\]"
        r" and \[4, 4\]",
    ),
    (
        lambda: compute(bad_stats()),
        r"Expected `focal_loss_sum` to have shape \[3\], but got \[4\]",
    ),
    (
        lambda: compute(empty_statistics(3)._replace(confusion_matrix=torch.zeros(3, 2))),
        r"Expected `confusion_matrix` to have shape \(C, C\), but got \[3, 2\]",
    ),
    (
        lambda: compute(empty_statistics(3)._replace(bin_correct=torch.zeros(3))),
        r"Expected `bin_correct` to have shape \[15\], but got \[3\]",
    ),
    (
        lambda: compute(empty_statistics(3)._replace(bin_count=torch.zeros(3, 1))),
        r"Expected `bin_count` to have shape \(B,\), but got \[3, 1\]",
    ),
    (
        lambda: merge(empty_statistics(3, 15), empty_statistics(3, 10)),
        r"Expected statistics of the same shape, but got `bin_count` of shape \[15\] and \[10\]",
    ),
    (lambda: Evaluator(1), r"Expected argument `num_classes` to be an integer >= 2, but got 1"),
    (
        lambda: Evaluator(3).update(torch.randn(2, 4), torch.tensor([0, 1])),
        r"Expected `logits` with 3 classes, but got 4",
    ),
    (
        lambda: EvaluationStep(num_bins=0),
        r"Expected argument `num_bins` to be an integer >= 1, but got 0",
    ),
    (
        lambda: class_balanced_weights(torch.tensor([1, 2]), beta=1.0),
        r"Expected argument `beta` to be a float in \[0, 1\), but got 1.0",
    ),
    (
        lambda: class_balanced_weights(torch.ones(2, 2)),
        r"Expected argument `counts` to be a 1-D tensor, but got shape \[2, 2\]",
    ),
    (
        lambda: inverse_frequency_weights(torch.tensor([1.0, -1.0])),
        r"Expected argument `counts` to hold finite values >= 0",
    ),
    (
        lambda: inverse_frequency_weights(torch.zeros(3)),
        r"Expected argument `counts` to have at least one positive count",
    ),
]


# --- multi-label (and binary) step, its metrics, ranking -----------------------------------
T = torch.tensor([[0, 1, 1], [1, 0, -100], [0, 0, 0], [1, 1, 1]])
NOT_FINITE = torch.tensor([[0.0, float("inf"), 1.0]])
EMPTY = empty_multilabel_statistics(3)
TARGET_VALUES = (
    r"Expected `targets` values in \{0, 1\} or equal to ignore_index \(-100\), but found"
)
THRESHOLD = r"Expected argument `threshold` to be a float in \(0, 1\), but got"
SCORE_BINS = r"Expected argument `score_bins` to be an integer >= 1, but got 0"

MULTILABEL_CASES: list[Any] = [
    (lambda: update_multilabel(X, T.masked_fill(T == 1, 2)), f"{TARGET_VALUES} 2"),
    (lambda: update_multilabel(X, T - 1), f"{TARGET_VALUES} -1"),
    (lambda: update_multilabel(X, T.to(torch.uint8)), f"{TARGET_VALUES} 156"),  # -100 wraps
    (
        lambda: update_multilabel(X, T[:3]),
        r"Expected `targets` to have the shape of `logits` \[4, 3\], but got \[3, 3\]",
    ),
    (
        lambda: update_multilabel(X[:, 0], T[:3, 0]),
        r"Expected `targets` to have the shape of `logits` \[4, 1\], but got \[3, 1\]",
    ),
    (
        lambda: update_multilabel(X, T.float()),
        r"Expected `targets` to be an integer tensor, but got dtype torch.float32",
    ),
    (
        lambda: update_multilabel(X, T == 1),
        r"Expected `targets` to be an integer tensor, but got dtype torch.bool",
    ),
    (
        lambda: update_multilabel(torch.zeros(4, 0), T[:, :0]),
        r"Expected `logits` to have shape \(N, L\) with L >= 1, but got \[4, 0\]",
    ),
    (
        lambda: update_multilabel(torch.zeros(4, 3, 2), T),
        r"Expected `logits` to have shape \(N, L\) with L >= 1, but got \[4, 3, 2\]",
    ),
    (
        lambda: update_multilabel(X.long(), T),
        r"Expected `logits` to be a floating point tensor, but got dtype torch.int64",
    ),
    (
        lambda: update_multilabel(NOT_FINITE, T[:1]),
        r"Expected `logits` to hold only finite values, but found NaN or inf",
    ),
    (
        lambda: update_multilabel(NOT_FINITE * 0, T[:1]),
        r"Expected `logits` to hold only finite values, but found NaN or inf",
    ),
    (lambda: update_multilabel(X, T, threshold=0.0), f"{THRESHOLD} 0.0"),
    (lambda: update_multilabel(X, T, threshold=1.0), f"{THRESHOLD} 1.0"),
    (lambda: update_multilabel(X, T, threshold=float("nan")), f"{THRESHOLD} nan"),
    (lambda: update_multilabel(X, T, threshold=-0.5), f"{THRESHOLD} -0.5"),
    (lambda: update_multilabel(X, T, score_bins=0), SCORE_BINS),
    (
        lambda: update_multilabel(X, T, num_bins=0),
        r"Expected argument `num_bins` to be an integer >= 1, but got 0",
    ),
    (
        lambda: update_multilabel(X, T, alpha=1.5),
        r"Expected argument `alpha` to be <= 1 \(negative turns it off\), but got 1.5",
    ),
    (
        lambda: update_multilabel(X, T, alpha=float("nan")),
        r"Expected argument `alpha` to be <= 1 \(negative turns it off\), but got nan",
    ),
    (
        lambda: update_multilabel(X, T, gamma=-1.0),
        r"Expected argument `gamma` to be a finite float >= 0, but got -1.0",
    ),
    (lambda: MultilabelEvaluationStep(score_bins=0), SCORE_BINS),
    (
        lambda: MultilabelEvaluationStep(num_bins=0),
        r"Expected argument `num_bins` to be an integer >= 1, but got 0",
    ),
    (
        lambda: merge_multilabel(EMPTY, empty_multilabel_statistics(4)),
        r"Expected statistics of the same shape, but got `true_positive` of shape \[3\] and \[4\]",
    ),
    (
        lambda: merge_multilabel(EMPTY, empty_multilabel_statistics(3, 10)),
        r"Expected statistics of the same shape, but got `bin_count` of shape \[15\] and \[10\]",
    ),
    (
        lambda: merge_multilabel(EMPTY, empty_multilabel_statistics(3, 15, 50)),
        r"Expected statistics of the same shape, but got `positive_histogram` of shape \[3, 100\] and \[3, 50\]",
    ),
    (
        lambda: merge_multilabel(EMPTY, EMPTY._replace(samples=torch.zeros(1, dtype=torch.long))),
        r"but got `samples` of shape \[\] and \[1\]",
    ),
    (
        lambda: compute_multilabel(EMPTY._replace(brier_sum=torch.zeros(4))),
        r"Expected `brier_sum` to have shape \[3\], but got \[4\]",
    ),
    (
        lambda: compute_multilabel(EMPTY._replace(true_positive=torch.zeros(3, 1))),
        r"Expected `true_positive` to have 1 dimension\(s\), but got \[3, 1\]",
    ),
    (
        lambda: compute_multilabel(EMPTY._replace(bin_count=torch.zeros(()))),
        r"Expected `bin_count` to have 1 dimension\(s\), but got \[\]",
    ),
    (
        lambda: compute_multilabel(EMPTY._replace(positive_histogram=torch.zeros(3))),
        r"Expected `positive_histogram` to have 2 dimension\(s\), but got \[3\]",
    ),
    (
        lambda: compute_multilabel(EMPTY._replace(negative_histogram=torch.zeros(3, 50))),
        r"Expected `negative_histogram` to have shape \[3, 100\], but got \[3, 50\]",
    ),
    (
        lambda: compute_multilabel(EMPTY._replace(exact_matches=torch.zeros(3))),
        r"Expected `exact_matches` to have shape \[\], but got \[3\]",
    ),
    (lambda: update_ranking(X, Y, score_bins=0), SCORE_BINS),
    (lambda: RankingStep(score_bins=0), SCORE_BINS),
    (
        lambda: update_ranking(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long)),
        r"Expected `logits` to have shape \(N, C\), but got \[2, 3, 4\]",
    ),
    (
        lambda: update_ranking(NOT_FINITE, torch.tensor([0])),
        r"Expected `logits` to hold only finite values, but found NaN or inf",
    ),
    (
        lambda: update_ranking(X, torch.tensor([0, 1, 3, 0])),
        r"Expected `target` values in \[0, 3\) or equal to ignore_index \(-100\), but found 3",
    ),
    (
        lambda: merge_ranking(empty_ranking_statistics(3), empty_ranking_statistics(4)),
        r"Expected ranking statistics of the same shape, but got `positive_histogram` of shape \[3, 100\] and \[4, 100\]",
    ),
    (
        lambda: merge_ranking(
            empty_ranking_statistics(3),
            empty_ranking_statistics(3)._replace(negative_histogram=torch.zeros(3, 50)),
        ),
        r"but got `negative_histogram` of shape \[3, 100\] and \[3, 50\]",
    ),
]


@pytest.mark.parametrize(
    ("call", "message"),
    [pytest.param(c, m, id=m[:60]) for c, m in CASES + MULTILABEL_CASES],
)
def test_bad_argument_raises_value_error_naming_it(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# --- integer target dtypes (segmentation masks are often uint8) -------------------------------
INTEGER_DTYPES = [
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint16,
    torch.uint32,
    torch.uint64,
]


def dtype_id(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@pytest.mark.parametrize("dtype", INTEGER_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("scripted", [False, True], ids=["eager", "scripted"])
def test_every_integer_target_dtype_gives_cross_entropy_at_gamma_0(
    dtype: torch.dtype, scripted: bool
) -> None:
    """Targets of any integer dtype, with an ignore value it can hold (255 or 127)."""
    ignore = 127 if dtype == torch.int8 else 255 if dtype == torch.uint8 else 1000
    logits = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 4, (2, 3, 3), generator=torch.Generator().manual_seed(1))
    target[0, 0, :] = ignore
    loss = torch.jit.script(softmax_focal_loss) if scripted else softmax_focal_loss
    got = loss(logits, target.to(dtype), gamma=0.0, ignore_index=ignore)
    expected = torch.nn.functional.cross_entropy(logits, target, ignore_index=ignore)
    torch.testing.assert_close(got, expected)
    module = FocalLoss(gamma=0.0, ignore_index=ignore)
    torch.testing.assert_close(module(logits, target.to(dtype)), expected)
    flat_logits = logits.permute(0, 2, 3, 1).reshape(-1, 4)
    _, statistics = update(flat_logits, target.reshape(-1).to(dtype), ignore_index=ignore)
    assert int(compute(statistics).support.sum()) == int((target != ignore).sum())


@pytest.mark.parametrize("dtype", INTEGER_DTYPES, ids=dtype_id)
def test_an_ignore_index_a_dtype_cannot_hold_never_matches_a_wrapped_label(
    dtype: torch.dtype,
) -> None:
    """-100 is 156 in uint8 (and 65436 in uint16): a label of that value is out of range."""
    wrapped = int(torch.tensor(-100).to(dtype).long())  # -100 itself for signed dtypes
    labels = torch.tensor([wrapped, 3]).to(dtype)
    message = (
        r"Expected `target` values in \[0, 100\) or equal to ignore_index \(-100\), but found"
        f" {wrapped}"
    )
    if wrapped == -100:  # signed dtypes hold -100 (uint64 reads back as int64 -100): ignored
        assert int(compute(update(torch.zeros(2, 100), labels)[1]).support.sum()) == 1
        return
    with pytest.raises(ValueError, match=message):
        update(torch.zeros(2, 100), labels)
    with pytest.raises(ValueError, match=message):
        softmax_focal_loss(torch.zeros(2, 100), labels)


@pytest.mark.parametrize("dtype", INTEGER_DTYPES, ids=dtype_id)
def test_a_multilabel_ignore_index_a_dtype_cannot_hold_never_matches_a_wrapped_target(
    dtype: torch.dtype,
) -> None:
    """-100 is 156 in uint8: a target of that value is neither 0, 1 nor ignored."""
    wrapped = int(torch.tensor(-100).to(dtype).long())  # -100 itself for signed dtypes
    targets = torch.tensor([[wrapped, 1]]).to(dtype)
    if wrapped == -100:  # signed dtypes hold -100 (uint64 reads back as int64 -100): ignored
        stats = update_multilabel(torch.zeros(1, 2), targets)[1]
        assert int(compute_multilabel(stats).support.sum()) == 1
        assert int(stats.true_positive.sum() + stats.true_negative.sum()) == 1
        return
    message = (
        r"Expected `targets` values in \{0, 1\} or equal to ignore_index \(-100\), but found"
        f" {wrapped}"
    )
    with pytest.raises(ValueError, match=message):
        update_multilabel(torch.zeros(1, 2), targets)
    with pytest.raises(ValueError, match=r"Expected `target` values in \[0, 2\)"):
        update_ranking(torch.zeros(2, 2), targets[0])
