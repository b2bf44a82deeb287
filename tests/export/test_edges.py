"""The edge slack is enough and not vacuous: a runtime that puts every sample near an edge on
the other side of it passes the parity check, and fails it without the slack."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from focal_eval.export.edges import (
    EDGE_WIDTH,
    SlackRule,
    multilabel_slack,
    no_slack,
    ranking_slack,
)
from focal_eval.export.kinds import MULTILABEL_EVALUATION, RANKING
from focal_eval.export.parity import Parity, measure
from focal_eval.export.runners import torch_runner
from focal_eval.export.sweeps import Inputs
from focal_eval.focal import MultilabelEvaluationStep, RankingStep

OFFSET = 5e-7  # either side of an edge: within EDGE_WIDTH, beyond float32 rounding
# the threshold 0.3 and edges of 15 calibration bins (k / 15) and 100 score bins (k / 100)
THRESHOLD = 0.3
EDGES = (0.2, 0.3, 0.4, 0.6)


def logit(p: np.ndarray) -> np.ndarray:
    return np.asarray(np.log(p / (1.0 - p)))


@dataclass(frozen=True)
class Moved:
    name: str = "samples near an edge moved across it"


def failing_without_slack(
    step: nn.Module,
    below: Inputs,
    above: Inputs,
    names: tuple[str, ...],
    slack: SlackRule,
) -> set[str]:
    """Eager on ``above`` as a runtime against eager on ``below``: it passes with ``slack``;
    the outputs that fail without it."""
    eager = torch_runner(step)
    moved = eager(above)

    def check(rule: SlackRule) -> Parity:
        return measure(lambda _: moved, eager, [Moved()], names, lambda _: below, rule)

    parity = check(slack)
    assert parity.passed, parity.failures
    return {failure.split(": ")[1] for failure in check(no_slack).failures}


COUNTS = {"true_positive", "bin_count", "positive_histogram"}


@pytest.mark.parametrize(
    ("n", "num_labels", "seed", "moved"),
    [
        (6, 3, 0, COUNTS - {"true_positive"}),
        (50, 4, 1, COUNTS | {"f1", "auroc"}),
        (400, 2, 2, COUNTS | {"f1", "auroc"}),
    ],
)
def test_multilabel_decisions_moved_across_edges_stay_within_the_slack(
    n: int, num_labels: int, seed: int, moved: set[str]
) -> None:
    rng = np.random.default_rng(seed)
    shape = (n, num_labels)
    chosen, edge = rng.random(shape) < 0.4, rng.choice(EDGES, size=shape)
    logits = rng.standard_normal(shape)
    below, above = (
        torch.from_numpy(np.where(chosen, logit(edge + side * OFFSET), logits).astype(np.float32))
        for side in (-1, 1)
    )
    targets = torch.from_numpy(rng.integers(0, 2, shape))
    targets[torch.from_numpy(rng.random(shape) < 0.2)] = -100
    scalars = (torch.tensor(0.25), torch.tensor(2.0), torch.tensor(THRESHOLD), torch.tensor(-100))
    # the construction: chosen samples on either side of their edge, within EDGE_WIDTH of it
    for side, logits_ in ((-1, below), (1, above)):
        p = torch.sigmoid(logits_).double().numpy()[chosen]
        assert (np.sign(p - edge[chosen]) == side).all()
        assert (np.abs(p - edge[chosen]) < EDGE_WIDTH).all()

    failing = failing_without_slack(
        MultilabelEvaluationStep(),
        (below, targets, *scalars),
        (above, targets, *scalars),
        MULTILABEL_EVALUATION.output_names,
        multilabel_slack,
    )
    assert moved <= failing


HISTOGRAMS = {"positive_histogram", "negative_histogram"}


@pytest.mark.parametrize(
    ("n", "c", "seed", "moved"),
    [
        (6, 2, 0, HISTOGRAMS),
        (50, 3, 1, HISTOGRAMS | {"auroc"}),
        (400, 2, 2, HISTOGRAMS | {"auroc"}),
    ],
)
def test_ranking_scores_moved_across_edges_stay_within_the_slack(
    n: int, c: int, seed: int, moved: set[str]
) -> None:
    rng = np.random.default_rng(seed)
    chosen, edge = rng.random(n) < 0.5, rng.choice(EDGES, size=n)
    labels = torch.from_numpy(rng.integers(0, c, n))
    labels[torch.from_numpy(rng.random(n) < 0.2)] = -100
    target = rng.integers(0, c, n)  # the class whose probability sits on the edge
    logits = rng.standard_normal((n, c))

    def straddling(side: int) -> torch.Tensor:
        p = edge + side * OFFSET
        q = np.repeat(((1.0 - p) / (c - 1))[:, None], c, axis=1)
        q[np.arange(n), target] = p
        return torch.from_numpy(np.where(chosen[:, None], np.log(q), logits).astype(np.float32))

    below, above = straddling(-1), straddling(1)
    for side, logits_ in ((-1, below), (1, above)):
        p = torch.softmax(logits_, 1).double().numpy()[np.arange(n), target][chosen]
        assert (np.sign(p - edge[chosen]) == side).all()

    ignore_index = torch.tensor(-100)
    failing = failing_without_slack(
        RankingStep(),
        (below, labels, ignore_index),
        (above, labels, ignore_index),
        RANKING.output_names,
        ranking_slack,
    )
    assert moved <= failing
