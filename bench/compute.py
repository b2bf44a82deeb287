"""Compute, in process: the evaluation graph against what else would compute the same.

The alternatives: eager PyTorch, our TorchScript artifact, a tutorial focal loss,
scikit-learn's metrics and a one-pass numpy floor, all on the same batches, already in
memory. The graph, eager and TorchScript runs compute the whole evaluation step (per-sample
values, statistics, metrics), the tutorial loss only the mean focal loss, scikit-learn only
the metrics, and the floor only reads the logits once (``logits.max(axis=1)``), which no
evaluation can avoid.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime
import torch

from bench.baselines.sklearn_metrics import sklearn_metrics
from bench.baselines.tutorial import tutorial_focal_loss
from bench.data import GAMMA, IGNORE_INDEX, Batch, case_name, make_batch
from bench.report import Section, Target
from bench.timing import Candidate, interleave
from focal_eval.focal import EvaluationStep
from focal_eval.service.artifacts import default_artifact_dir, find_artifact, open_session

SHAPES = ((100_000, 10), (100_000, 100), (10_000, 1000), (1000, 10))
QUICK_SHAPES = ((100_000, 100), (1000, 10))
THREADS = 2  # onnxruntime intra-op threads and torch threads alike, as FOCAL_THREADS=2
NUM_BINS = 15  # the shipped graph's calibration bins

GRAPH = "graph (onnxruntime)"
EAGER = "eager (focal.EvaluationStep)"
SCRIPTED = "torchscript artifact"
TUTORIAL = "tutorial focal loss (eager, loss only)"
SKLEARN = "scikit-learn metrics"
FLOOR = "floor: logits.max(axis=1)"


def evaluation_session(threads: int = THREADS) -> onnxruntime.InferenceSession:
    """The shipped evaluation graph, opened with the service's session options."""
    return open_session(find_artifact(default_artifact_dir(), "evaluation"), threads)


def graph_feeds(batch: Batch) -> dict[str, npt.NDArray[Any]]:
    """The evaluation graph's inputs for ``batch`` (default gamma and ignore_index)."""
    return {
        "logits": batch.logits,
        "labels": batch.labels,
        "alpha": batch.alpha,
        "gamma": np.asarray(GAMMA, dtype=np.float32),
        "ignore_index": np.asarray(IGNORE_INDEX, dtype=np.int64),
    }


@contextmanager
def torchscript_artifact() -> Iterator[torch.jit.ScriptModule]:
    """Our TorchScript artifact, written by ``export`` into a temporary directory and loaded."""
    from focal_eval.export.torchscript import export_torchscript

    with tempfile.TemporaryDirectory(prefix="focal-bench-") as directory:
        yield export_torchscript(Path(directory) / "evaluation.torchscript.pt", NUM_BINS)


def candidates(
    batch: Batch, session: onnxruntime.InferenceSession, scripted: torch.jit.ScriptModule
) -> dict[str, Candidate]:
    """The six candidates for one batch, as zero-argument callables."""
    feeds = graph_feeds(batch)
    logits, labels = torch.from_numpy(batch.logits), torch.from_numpy(batch.labels)
    alpha = torch.from_numpy(batch.alpha)
    gamma = torch.tensor(GAMMA, dtype=torch.float32)
    ignore_index = torch.tensor(IGNORE_INDEX, dtype=torch.int64)
    eager = EvaluationStep(NUM_BINS).eval()

    def graph() -> object:
        return session.run(None, feeds)

    def eager_step() -> object:
        with torch.inference_mode():
            return eager(logits, labels, alpha, gamma, ignore_index)

    def scripted_step() -> object:
        with torch.inference_mode():
            return scripted(logits, labels, alpha, gamma, ignore_index)

    def tutorial() -> object:
        with torch.inference_mode():
            return tutorial_focal_loss(logits, labels, alpha, GAMMA)

    def sklearn() -> object:
        return sklearn_metrics(batch.logits, batch.labels)

    def floor() -> object:
        return batch.logits.max(axis=1)

    return {
        GRAPH: graph,
        EAGER: eager_step,
        SCRIPTED: scripted_step,
        TUTORIAL: tutorial,
        SKLEARN: sklearn,
        FLOOR: floor,
    }


def run(quick: bool) -> Section:
    """Time every candidate on every shape; ratios of the graph to each alternative."""
    section = Section("compute", "in process, seconds per call (medians over rounds)")
    torch.set_num_threads(THREADS)
    session = evaluation_session()
    rounds, budget, warmup = (2, 0.0, 0) if quick else (15, 20.0, 1)
    with warnings.catch_warnings(), torchscript_artifact() as scripted:
        # a random batch may leave a class unpredicted: scikit-learn warns, as it should
        warnings.simplefilter("ignore", UserWarning)
        for n, c in QUICK_SHAPES if quick else SHAPES:
            case = case_name(n, c)
            timed = interleave(
                candidates(make_batch(n, c), session, scripted),
                rounds,
                min_rounds=min(rounds, 3),
                budget_s=budget,
                warmup=warmup,
            )
            for name in timed.seconds:
                section.add(case, name, timed.median(name), "s")
            big = n >= 100_000
            section.compare(
                case,
                "graph / tutorial loss",
                timed.ratio(GRAPH, TUTORIAL),
                Target("<=", 0.6) if (n, c) == (100_000, 100) else None,
            )
            section.compare(case, "graph / floor", timed.ratio(GRAPH, FLOOR), Target("<=", 3))
            section.compare(
                case,
                "graph / sklearn",
                timed.ratio(GRAPH, SKLEARN),
                Target("<=", 0.1) if big else None,
            )
            section.compare(case, "eager / graph", timed.ratio(EAGER, GRAPH))
            section.compare(case, "torchscript / graph", timed.ratio(SCRIPTED, GRAPH))
    section.notes.append(
        f"onnxruntime intra-op threads = torch threads = {THREADS}; CPU memory arena off"
        " (service.artifacts.open_session)"
    )
    section.notes.append(
        "graph, eager and torchscript: per-sample values + statistics + metrics;"
        " tutorial: mean focal loss only; sklearn: metrics only (softmax/argmax in numpy)"
    )
    return section
