"""Every public function and module compiles with torch.jit.script and equals eager."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from focal_eval import focal
from focal_eval.focal import (
    EvaluationStatisticsStep,
    EvaluationStep,
    FocalLoss,
    MetricsFromStatistics,
    MultilabelEvaluationStatisticsStep,
    MultilabelEvaluationStep,
    MultilabelMetricsFromStatistics,
    RankingFromStatistics,
    RankingStatisticsStep,
    RankingStep,
    SigmoidFocalLoss,
    class_balanced_weights,
    compute,
    compute_multilabel,
    empty_multilabel_statistics,
    empty_ranking_statistics,
    inverse_frequency_weights,
    merge,
    merge_multilabel,
    merge_ranking,
    ranking,
    sigmoid_focal_loss,
    softmax_focal_loss,
    update,
    update_multilabel,
    update_ranking,
)

IGNORE = -100


def cases() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    out = []
    for n, c, scale in [(1, 2, 1.0), (17, 3, 30.0), (64, 10, 1e4), (33, 100, 3.0)]:
        logits = torch.randn(n, c, generator=generator) * scale
        labels = torch.randint(0, c, (n,), generator=generator)
        labels[::4] = IGNORE
        out.append((logits, labels))
    out.append((torch.zeros(5, 4), torch.tensor([0, 1, 2, 3, 0])))  # equal rows
    return out


def assert_same(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    else:
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"reduction": "none"}, id="none"),
        pytest.param({"reduction": "sum", "label_smoothing": 0.1}, id="sum-smoothing"),
        pytest.param({"normalization": "valid"}, id="valid"),
    ],
)
def test_scripted_softmax_focal_loss_matches_eager(gamma: float, kwargs: dict[str, Any]) -> None:
    scripted = torch.jit.script(softmax_focal_loss)
    for logits, labels in cases():
        alpha = torch.rand(logits.shape[1])
        eager = softmax_focal_loss(logits, labels, alpha, gamma, IGNORE, **kwargs)
        assert_same(scripted(logits, labels, alpha, gamma, IGNORE, **kwargs), eager)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_scripted_modules_match_eager(gamma: float) -> None:
    for logits, labels in cases():
        c = logits.shape[1]
        module = FocalLoss(alpha=torch.rand(c), gamma=gamma, label_smoothing=0.05)
        assert_same(torch.jit.script(module)(logits, labels), module(logits, labels))
        targets = (torch.rand_like(logits) < 0.3).float()
        sigmoid = SigmoidFocalLoss(gamma=gamma, reduction="mean")
        assert_same(torch.jit.script(sigmoid)(logits, targets), sigmoid(logits, targets))
        assert_same(
            torch.jit.script(sigmoid_focal_loss)(logits, targets, 0.25, gamma, "none"),
            sigmoid_focal_loss(logits, targets, 0.25, gamma, "none"),
        )


def test_scripted_evaluation_step_matches_eager() -> None:
    step = EvaluationStep()
    scripted_step = torch.jit.script(step)
    scripted_update = torch.jit.script(update)
    scripted_compute = torch.jit.script(compute)
    scripted_merge = torch.jit.script(merge)
    scripted_metrics = torch.jit.script(MetricsFromStatistics())
    scripted_chunk = torch.jit.script(EvaluationStatisticsStep())
    for logits, labels in cases():
        c = logits.shape[1]
        alpha = torch.rand(c)
        inputs = (logits, labels, alpha, torch.tensor(2.0), torch.tensor(IGNORE))
        eager = step(*inputs)
        assert_same(scripted_step(*inputs), eager)
        assert_same(scripted_chunk(*inputs), (eager.per_sample, eager.statistics))
        per_sample, stats = update(logits, labels, alpha, 2.0, IGNORE)
        assert_same(scripted_update(logits, labels, alpha, 2.0, IGNORE), (per_sample, stats))
        assert_same(scripted_compute(stats), compute(stats))
        assert_same(scripted_merge(stats, stats), merge(stats, stats))
        assert_same(scripted_metrics(*stats), eager.metrics)


def test_scripted_weights_match_eager() -> None:
    counts = torch.tensor([100, 7, 0, 1])
    # float32 results of a float64 computation: TorchScript may round the last bit differently
    torch.testing.assert_close(
        torch.jit.script(class_balanced_weights)(counts, 0.99), class_balanced_weights(counts, 0.99)
    )
    torch.testing.assert_close(
        torch.jit.script(inverse_frequency_weights)(counts), inverse_frequency_weights(counts)
    )


def test_scripted_functions_raise_the_eager_messages() -> None:
    scripted = torch.jit.script(softmax_focal_loss)
    with pytest.raises(
        torch.jit.Error, match="ValueError: Expected argument `gamma` to be a finite"
    ):
        scripted(torch.randn(2, 3), torch.tensor([0, 1]), None, -1.0)
    with pytest.raises(torch.jit.Error, match=r"Expected `target` values in \[0, 3\)"):
        scripted(torch.randn(2, 3), torch.tensor([0, 3]))


def test_scripted_statistics_checks_raise_the_eager_messages() -> None:
    stats = update(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))[1]
    wrong = stats._replace(alpha_sum=torch.zeros(4, dtype=torch.float64))
    with pytest.raises(
        torch.jit.Error, match=r"Expected `alpha_sum` to have shape \[3\], but got \[4\]"
    ):
        torch.jit.script(compute)(wrong)
    with pytest.raises(torch.jit.Error, match=r"got `alpha_sum` of shape \[3\] and \[4\]"):
        torch.jit.script(merge)(stats, wrong)


def multilabel_cases() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    out = []
    for n, num_labels, scale in [(1, 1, 1.0), (17, 3, 30.0), (64, 10, 1e4), (33, 40, 3.0)]:
        logits = torch.randn(n, num_labels, generator=generator) * scale
        targets = torch.randint(0, 2, (n, num_labels), generator=generator)
        targets[::4, 0] = IGNORE
        out.append((logits, targets))
    out.append((torch.zeros(5, 4), torch.randint(0, 2, (5, 4), generator=generator)))  # p = 0.5
    return out


def test_scripted_multilabel_step_matches_eager() -> None:
    """Scripted functions and modules equal eager; the module equals update + compute."""
    step = MultilabelEvaluationStep(num_bins=10, score_bins=50)
    scripted_step = torch.jit.script(step)
    scripted_update = torch.jit.script(update_multilabel)
    scripted_compute = torch.jit.script(compute_multilabel)
    scripted_merge = torch.jit.script(merge_multilabel)
    scripted_empty = torch.jit.script(empty_multilabel_statistics)
    scripted_metrics = torch.jit.script(MultilabelMetricsFromStatistics())
    scripted_chunk = torch.jit.script(MultilabelEvaluationStatisticsStep(10, 50))
    arguments = (0.25, 2.0, 0.5, IGNORE, 10, 50)
    graph_inputs = [torch.tensor(value, dtype=torch.float64) for value in arguments[:3]]
    for logits, targets in multilabel_cases():
        eager = step(logits, targets, *graph_inputs, torch.tensor(IGNORE))
        assert_same(scripted_step(logits, targets, *graph_inputs, torch.tensor(IGNORE)), eager)
        chunk = scripted_chunk(logits, targets, *graph_inputs, torch.tensor(IGNORE))
        assert_same(chunk, (eager.per_sample, eager.statistics))
        per_sample, stats = update_multilabel(logits, targets, *arguments)
        assert_same((per_sample, stats, compute_multilabel(stats)), eager)
        assert_same(scripted_update(logits, targets, *arguments), (per_sample, stats))
        assert_same(scripted_compute(stats), eager.metrics)
        assert_same(scripted_merge(stats, stats), merge_multilabel(stats, stats))
        assert_same(scripted_metrics(*stats), eager.metrics)
        empty = empty_multilabel_statistics(logits.shape[1], 10, 50)
        assert_same(scripted_empty(logits.shape[1], 10, 50), empty)


def test_scripted_ranking_matches_eager() -> None:
    step = RankingStep(score_bins=50)
    scripted_step = torch.jit.script(step)
    scripted_update = torch.jit.script(update_ranking)
    scripted_ranking = torch.jit.script(ranking)
    scripted_merge = torch.jit.script(merge_ranking)
    scripted_empty = torch.jit.script(empty_ranking_statistics)
    scripted_metrics = torch.jit.script(RankingFromStatistics())
    scripted_chunk = torch.jit.script(RankingStatisticsStep(score_bins=50))
    for logits, labels in cases():
        eager = step(logits, labels, torch.tensor(IGNORE))
        assert_same(scripted_step(logits, labels, torch.tensor(IGNORE)), eager)
        assert_same(scripted_chunk(logits, labels, torch.tensor(IGNORE)), eager.statistics)
        stats = update_ranking(logits, labels, IGNORE, 50)
        assert_same((stats, ranking(*stats)), eager)
        assert_same(scripted_update(logits, labels, IGNORE, 50), stats)
        assert_same(scripted_ranking(*stats), eager.metrics)
        assert_same(scripted_metrics(*stats), eager.metrics)
        assert_same(scripted_merge(stats, stats), merge_ranking(stats, stats))
        c = logits.shape[1]
        assert_same(scripted_empty(c, 50), empty_ranking_statistics(c, 50))


def test_scripted_multilabel_checks_raise_the_eager_messages() -> None:
    scripted = torch.jit.script(update_multilabel)
    logits, targets = torch.randn(2, 3), torch.tensor([[0, 1, 1], [1, 0, IGNORE]])
    # TorchScript writes the float 1.0 as "1."
    with pytest.raises(torch.jit.Error, match=r"`threshold` to be a float in \(0, 1\), but got 1"):
        scripted(logits, targets, threshold=1.0)
    with pytest.raises(torch.jit.Error, match=r"Expected `targets` values in \{0, 1\}"):
        scripted(logits, targets + 1)
    stats = update_multilabel(logits, targets)[1]
    wrong = stats._replace(brier_sum=torch.zeros(4, dtype=torch.float64))
    with pytest.raises(torch.jit.Error, match=r"got `brier_sum` of shape \[3\] and \[4\]"):
        torch.jit.script(merge_multilabel)(stats, wrong)
    with pytest.raises(torch.jit.Error, match=r"Expected `brier_sum` to have shape \[3\]"):
        torch.jit.script(compute_multilabel)(wrong)


PUBLIC_CALLABLES: list[Callable[..., Any]] = [
    getattr(focal, name) for name in focal.__all__ if callable(getattr(focal, name))
]


def test_every_public_function_is_covered() -> None:
    scriptable_types = {
        "Evaluator",
        "Metrics",
        "PerSample",
        "Statistics",
        "EvaluationOutputs",
        "EvaluationStatistics",
        "MultilabelEvaluationOutputs",
        "MultilabelEvaluationStatistics",
        "MultilabelMetrics",
        "MultilabelPerSample",
        "MultilabelStatistics",
        "Ranking",
        "RankingOutputs",
        "RankingStatistics",
    }
    covered = {
        "EvaluationStatisticsStep",
        "EvaluationStep",
        "FocalLoss",
        "MetricsFromStatistics",
        "SigmoidFocalLoss",
        "class_balanced_weights",
        "compute",
        "inverse_frequency_weights",
        "merge",
        "sigmoid_focal_loss",
        "softmax_focal_loss",
        "update",
        "empty_statistics",
        # test_scripted_multilabel_step_matches_eager
        "MultilabelEvaluationStatisticsStep",
        "MultilabelEvaluationStep",
        "MultilabelMetricsFromStatistics",
        "compute_multilabel",
        "empty_multilabel_statistics",
        "merge_multilabel",
        "update_multilabel",
        # test_scripted_ranking_matches_eager
        "RankingFromStatistics",
        "RankingStatisticsStep",
        "RankingStep",
        "empty_ranking_statistics",
        "merge_ranking",
        "ranking",
        "update_ranking",
    }
    assert set(focal.__all__) == covered | scriptable_types
    torch.jit.script(focal.empty_statistics)
