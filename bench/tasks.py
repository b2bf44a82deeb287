"""Multi-label and ranking, in process: the graphs against what else would compute the same.

At N = 100,000 and L = 100: the multi-label graph (per-sample losses, statistics with the
score histograms, every metric) against a tutorial eager sigmoid focal loss (the mean loss
only) and scikit-learn (its metrics, AUROC and AP exact). At N = 100,000 and C = 100: the
multi-class evaluation with the opt-in ranking against it alone. Each as the service runs it
on its fast path (the fused graphs of ``service/kernel``), and with the portable graphs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime
import torch

from bench.baselines.sklearn_multilabel import sklearn_multilabel_metrics
from bench.baselines.tutorial import tutorial_sigmoid_focal_loss
from bench.compute import THREADS, evaluation_session, graph_feeds, shipped_session
from bench.data import GAMMA, IGNORE_INDEX, make_batch
from bench.report import Section, Target
from bench.timing import Candidate, interleave
from focal_eval.service.core.scoring import chunk_rows

LABEL_SHAPE = (100_000, 100)
QUICK_LABEL_SHAPE = (10_000, 20)
ALPHA = 0.25  # the multi-label graph's default weight of positives
THRESHOLD = 0.5

GRAPH = "multilabel graph (onnxruntime), whole batch"
SERVED = "multilabel graph in the service's chunks, + metrics graph"
FAST = "fast path: fused multilabel graph in the service's chunks, + metrics graph"
TUTORIAL = "tutorial sigmoid focal loss (eager, loss only)"
SKLEARN = "scikit-learn multilabel metrics"
WITHOUT = "evaluation graph"
WITH = "evaluation graph + ranking graph"
FAST_WITHOUT = "fast path: fused evaluation + metrics graphs"
FAST_WITH = "fast path: fused evaluation with ranking + metrics and ranking metrics graphs"


def served(
    graph: onnxruntime.InferenceSession,
    metrics: Sequence[onnxruntime.InferenceSession],
    feeds: dict[str, Any],
    rows: int,
) -> Candidate:
    """``graph`` as ``service.core.scoring.Scorer`` runs it, then each ``metrics`` graph once.

    Chunks of ``rows`` (the inputs with a first dimension of N are cut), statistics summed.
    """
    n = len(feeds["logits"])
    statistics = [entry.name for graph in metrics for entry in graph.get_inputs()]
    names = [output.name for output in graph.get_outputs()]

    def run() -> object:
        sums: dict[str, Any] = {}
        for start in range(0, n, rows):
            chunk = {
                name: value[start : start + rows] if value.ndim and len(value) == n else value
                for name, value in feeds.items()
            }
            outputs = dict(zip(names, graph.run(None, chunk), strict=True))
            for name in statistics:
                sums[name] = outputs[name] + sums[name] if name in sums else outputs[name]
        return [
            graph.run(
                None, {entry.name: np.asarray(sums[entry.name]) for entry in graph.get_inputs()}
            )
            for graph in metrics
        ]

    return run


def label_batch(n: int, labels: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Logits ``N(0, 2^2)`` and targets drawn with probability ``sigmoid(logit)``."""
    rng = np.random.default_rng(0)
    logits = (2 * rng.standard_normal((n, labels))).astype(np.float32)
    targets = (rng.random((n, labels)) < 1 / (1 + np.exp(-logits))).astype(np.int64)
    return logits, targets


def multilabel_feeds(
    logits: npt.NDArray[np.float32], targets: npt.NDArray[np.int64]
) -> dict[str, npt.NDArray[Any]]:
    """The multi-label graph's inputs (its defaults for the scalars)."""
    return {
        "logits": logits,
        "targets": targets,
        "alpha": np.asarray(ALPHA, np.float32),
        "gamma": np.asarray(GAMMA, np.float32),
        "threshold": np.asarray(THRESHOLD, np.float32),
        "ignore_index": np.asarray(IGNORE_INDEX, np.int64),
    }


def multilabel_candidates(n: int, labels: int) -> dict[str, Candidate]:
    """The graph (portable and fused), the tutorial loss and scikit-learn on one batch."""
    logits, targets = label_batch(n, labels)
    graph, feeds = shipped_session("multilabel_evaluation"), multilabel_feeds(logits, targets)
    metrics = shipped_session("multilabel_metrics")
    logits_t, targets_t = torch.from_numpy(logits), torch.from_numpy(targets).float()
    rows = chunk_rows(labels)

    def tutorial() -> object:
        with torch.inference_mode():
            return tutorial_sigmoid_focal_loss(logits_t, targets_t, ALPHA, GAMMA)

    return {
        GRAPH: lambda: graph.run(None, feeds),
        SERVED: served(graph, [metrics], feeds, rows),
        FAST: served(shipped_session("fused_multilabel_evaluation"), [metrics], feeds, rows),
        TUTORIAL: tutorial,
        SKLEARN: lambda: sklearn_multilabel_metrics(logits, targets, THRESHOLD),
    }


def ranking_candidates(n: int, c: int) -> dict[str, Candidate]:
    """Multi-class evaluation with and without ranking: the portable graphs, and as served."""
    batch = make_batch(n, c)
    evaluation, ranking, feeds = (
        evaluation_session(),
        shipped_session("ranking"),
        graph_feeds(batch),
    )
    ranking_feeds = {name: feeds[name] for name in ("logits", "labels", "ignore_index")}
    rows = chunk_rows(c)
    metrics = shipped_session("metrics")
    fast = served(shipped_session("fused_evaluation"), [metrics], feeds, rows)
    both = served(
        shipped_session("fused_evaluation_ranking"),
        [metrics, shipped_session("ranking_metrics")],
        feeds,
        rows,
    )

    def portable_both() -> object:
        return evaluation.run(None, feeds), ranking.run(None, ranking_feeds)

    return {
        WITHOUT: lambda: evaluation.run(None, feeds),
        WITH: portable_both,
        FAST_WITHOUT: fast,
        FAST_WITH: both,
    }


def run(quick: bool) -> Section:
    """Time each pair of candidates; the ratios against their targets."""
    section = Section("tasks", "in process, seconds per call (medians over rounds)")
    torch.set_num_threads(THREADS)
    rounds, budget, warmup = (2, 0.0, 0) if quick else (7, 60.0, 1)
    n, labels = QUICK_LABEL_SHAPE if quick else LABEL_SHAPE
    case = f"multilabel N={n} L={labels}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        timed = interleave(
            multilabel_candidates(n, labels), rounds, min_rounds=2, budget_s=budget, warmup=warmup
        )
    for name in timed.seconds:
        section.add(case, name, timed.median(name), "s")
    for graph, label in ((FAST, "fast path, served"), (SERVED, "served"), (GRAPH, "whole")):
        section.compare(
            case,
            f"graph ({label}) / tutorial loss",
            timed.ratio(graph, TUTORIAL),
            Target("<=", 1.0),
        )
        section.compare(
            case, f"graph ({label}) / sklearn", timed.ratio(graph, SKLEARN), Target("<=", 0.05)
        )
    n, c = (10_000, 100) if quick else (100_000, 100)
    case = f"ranking N={n} C={c}"
    timed = interleave(
        ranking_candidates(n, c), rounds, min_rounds=2, budget_s=budget, warmup=warmup
    )
    for name in timed.seconds:
        section.add(case, name, timed.median(name), "s")
    section.compare(
        case, "ranking on / off (fast path)", timed.ratio(FAST_WITH, FAST_WITHOUT), Target("<", 2.0)
    )
    section.compare(case, "ranking on / off (portable graphs)", timed.ratio(WITH, WITHOUT))
    section.notes.append(
        f"served: chunks of {chunk_rows(LABEL_SHAPE[1])} rows (service.core.scoring.chunk_rows)"
        " and the metrics graph on their summed statistics; whole: one run on the batch"
    )
    section.notes.append(
        "multilabel graph: per-sample focal loss and BCE, statistics (with 100-bin score"
        " histograms), every metric; tutorial: mean sigmoid focal loss only (float targets"
        " made before timing); sklearn: counts, F1s, subset accuracy, Hamming, exact AUROC /"
        " AP per label and micro, log loss, Brier (no ECE: scikit-learn has none)"
    )
    return section
