"""Compute, in process: the evaluation graph against what else would compute the same.

The alternatives: eager PyTorch, our TorchScript artifact, a tutorial focal loss,
scikit-learn's metrics and a one-pass numpy floor, all on the same batches, already in
memory. The graph, eager and TorchScript runs compute the whole evaluation step (per-sample
values, statistics, metrics), the tutorial loss only the mean focal loss, scikit-learn only
the metrics, and the floor only reads the logits once (``logits.max(axis=1)``), which no
evaluation can avoid. The fast path is the fused kernel's graph (per-sample values and
statistics in one pass over each row) with the metrics graph on its statistics, as the
service runs it; its floor is one ReduceMax over the logits in onnxruntime (numpy's ``max``
is four times slower, so it is not a true read floor). The portable path is what serves
without the kernel: the service's ``Scorer`` with the fast path off, which runs the portable
graph over chunks of rows and the metrics graph once on the summed statistics.
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
import onnx
import onnxruntime
import torch
from onnx import helper

from bench.baselines.sklearn_metrics import sklearn_metrics
from bench.baselines.torchmetrics_metrics import torchmetrics_collection, torchmetrics_update
from bench.baselines.tutorial import tutorial_focal_loss
from bench.data import GAMMA, IGNORE_INDEX, Batch, case_name, make_batch
from bench.report import Section, Target
from bench.timing import Candidate, interleave
from focal_eval.focal import EvaluationStep, Evaluator
from focal_eval.service.artifacts import default_artifact_dir, find_artifact, open_session
from focal_eval.service.core.scoring import Scorer, Scorers
from focal_eval.service.core.settings import Settings
from focal_eval.service.core.validation import multiclass_batch
from focal_eval.service.kernel import library_path

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
FUSED = "fast path (fused kernel + metrics graph)"
PORTABLE = "portable path (Scorer, fast path off: chunks + metrics graph)"
READ = "read floor: ReduceMax (onnxruntime)"
EVALUATOR = "eager focal.Evaluator.update"
TORCHMETRICS = "torchmetrics update (5 of the metrics)"


def shipped_session(kind: str, threads: int = THREADS) -> onnxruntime.InferenceSession:
    """A shipped graph, opened with the service's session options (and the kernel, if fused)."""
    libraries = []
    if kind.startswith("fused_"):
        library = library_path()
        if library is None:
            raise SystemExit("bench: the kernel library was not built (no C++ compiler at install)")
        libraries.append(library)
    return open_session(find_artifact(default_artifact_dir(), kind), threads, libraries)


def evaluation_session(threads: int = THREADS) -> onnxruntime.InferenceSession:
    """The shipped evaluation graph, opened with the service's session options."""
    return shipped_session("evaluation", threads)


def reduce_max_session(threads: int = THREADS) -> onnxruntime.InferenceSession:
    """One ReduceMax over the rows of ``x`` [N, C]: what reading the logits once costs."""
    node = helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0)
    graph = helper.make_graph(
        [node],
        "read",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", "C"])],
        [helper.make_tensor_value_info("m", onnx.TensorProto.FLOAT, ["N"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


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


def portable_scorer() -> Scorer:
    """The service's multi-class scorer on the shipped graphs, with the fast path off."""
    settings = Settings.model_validate({"threads": THREADS, "fast_path": False})
    return Scorers.load(settings).multiclass


def candidates(
    batch: Batch,
    session: onnxruntime.InferenceSession,
    scripted: torch.jit.ScriptModule,
    scorer: Scorer,
) -> dict[str, Candidate]:
    """The eleven candidates for one batch, as zero-argument callables."""
    feeds = graph_feeds(batch)
    validated = multiclass_batch(batch.logits, batch.labels, batch.alpha, GAMMA, IGNORE_INDEX)
    fused, metrics = shipped_session("fused_evaluation"), shipped_session("metrics")
    statistics = [entry.name for entry in metrics.get_inputs()]
    fused_names = [entry.name for entry in fused.get_outputs()]
    read = reduce_max_session()
    logits, labels = torch.from_numpy(batch.logits), torch.from_numpy(batch.labels)
    alpha = torch.from_numpy(batch.alpha)
    gamma = torch.tensor(GAMMA, dtype=torch.float32)
    ignore_index = torch.tensor(IGNORE_INDEX, dtype=torch.int64)
    eager = EvaluationStep(NUM_BINS).eval()
    evaluator = Evaluator(batch.logits.shape[1], alpha, GAMMA, IGNORE_INDEX, NUM_BINS)
    collection = torchmetrics_collection(batch.logits.shape[1], NUM_BINS)
    valid = labels != IGNORE_INDEX  # torchmetrics' ignore_index leaves a row in its softmax
    kept_logits, kept_labels = logits[valid], labels[valid]

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

    def fast_path() -> object:
        outputs = dict(zip(fused_names, fused.run(None, feeds), strict=True))
        return metrics.run(None, {name: outputs[name] for name in statistics})

    def portable_path() -> object:
        return scorer.score(validated)

    def read_once() -> object:
        return read.run(None, {"x": batch.logits})

    def evaluator_update() -> object:
        with torch.inference_mode():
            return evaluator.update(logits, labels)

    def torchmetrics_batch() -> object:
        with torch.inference_mode():
            torchmetrics_update(collection, kept_logits, kept_labels)
        return collection

    return {
        GRAPH: graph,
        EAGER: eager_step,
        SCRIPTED: scripted_step,
        TUTORIAL: tutorial,
        SKLEARN: sklearn,
        FLOOR: floor,
        FUSED: fast_path,
        PORTABLE: portable_path,
        READ: read_once,
        EVALUATOR: evaluator_update,
        TORCHMETRICS: torchmetrics_batch,
    }


def run(quick: bool) -> Section:
    """Time every candidate on every shape; ratios of the graph to each alternative."""
    section = Section("compute", "in process, seconds per call (medians over rounds)")
    torch.set_num_threads(THREADS)
    session, scorer = evaluation_session(), portable_scorer()
    rounds, budget, warmup = (2, 0.0, 0) if quick else (15, 20.0, 1)
    with warnings.catch_warnings(), torchscript_artifact() as scripted:
        # a random batch may leave a class unpredicted: scikit-learn warns, as it should
        warnings.simplefilter("ignore", UserWarning)
        for n, c in QUICK_SHAPES if quick else SHAPES:
            case = case_name(n, c)
            timed = interleave(
                candidates(make_batch(n, c), session, scripted, scorer),
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
            target = (n, c) == (100_000, 100)
            section.compare(
                case,
                "fast path / tutorial loss",
                timed.ratio(FUSED, TUTORIAL),
                Target("<=", 0.3) if target else None,
            )
            section.compare(
                case,
                "portable path / tutorial loss (issue 14)",
                timed.ratio(PORTABLE, TUTORIAL),
                Target("<=", 1.0) if target else None,
            )
            section.compare(
                case,
                "fast path / ReduceMax",
                timed.ratio(FUSED, READ),
                Target("<=", 8) if target else None,
            )
            section.compare(case, "fast path / graph", timed.ratio(FUSED, GRAPH))
            section.compare(
                case,
                "eager Evaluator.update / torchmetrics (issue 14)",
                timed.ratio(EVALUATOR, TORCHMETRICS),
                Target("<=", 1.0) if target else None,
            )
            section.compare(case, "eager / graph", timed.ratio(EAGER, GRAPH))
            section.compare(case, "torchscript / graph", timed.ratio(SCRIPTED, GRAPH))
    section.notes.append(
        f"onnxruntime intra-op threads = torch threads = {THREADS}; CPU memory arena off"
        " (service.artifacts.open_session), but in the portable path's chunks, where it is"
        " released after each batch (service.core.scoring.Scorer)"
    )
    section.notes.append(
        "graph, eager and torchscript: per-sample values + statistics + metrics;"
        " tutorial: mean focal loss only; sklearn: metrics only (softmax/argmax in numpy)"
    )
    return section
