"""Eager vs TorchScript vs torch.export vs onnxruntime on the issue's sweeps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from focal_eval.export.kinds import MULTILABEL_EVALUATION, RANKING, GraphKind, Options
from focal_eval.export.parity import Runner, measure
from focal_eval.export.runners import onnx_runner, torch_runner
from focal_eval.export.sweeps import Case, LabelCase, Named, label_sweep, sweep
from focal_eval.focal import EvaluationStep, Metrics, PerSample, Statistics

NAMES = PerSample._fields + Statistics._fields + Metrics._fields
# the sets: every N x C pair, gamma / alpha / ignore / scale cycled, equal rows per C
CASES = sweep(ns=(1, 7, 4096, 100_000), cs=(2, 3, 10, 100, 1000), seed=1)

Run = Callable[[tuple[torch.Tensor, ...]], Sequence[np.ndarray]]


def flat(outputs: object) -> list[np.ndarray]:
    if isinstance(outputs, torch.Tensor):
        return [outputs.numpy()]
    assert isinstance(outputs, tuple | list)
    return [array for item in outputs for array in flat(item)]


CALIBRATION = {"bin_count", "bin_correct", "bin_confidence_sum", "expected_calibration_error"}


def samples_near_bin_edges(outputs: dict[str, np.ndarray]) -> int:
    """Samples within 1e-5 of a calibration-bin edge: they may be binned differently."""
    bins = len(outputs["bin_count"])
    scaled = outputs["confidence"].astype(np.float64) * bins
    edge = np.round(scaled)
    return int(np.sum((edge > 0) & (edge < bins) & (np.abs(scaled - edge) < 1e-5)))


def assert_outputs_match(
    got: Sequence[np.ndarray], want: Sequence[np.ndarray], context: str
) -> None:
    """Counts equal and floats within 1e-5 + 1e-4 |x|, except the calibration outputs, where
    each sample near a bin edge may move one bin (and shift its sums and the ECE)."""
    assert len(got) == len(want) == len(NAMES)
    reference = dict(zip(NAMES, want, strict=True))
    near = samples_near_bin_edges(reference)
    n_valid = max(int(reference["bin_count"].sum()), 1)
    for name, x, ref in zip(NAMES, got, want, strict=True):
        where = f"{context}: {name}"
        assert x.shape == ref.shape, where
        if name in CALIBRATION and near:
            np.testing.assert_array_equal(np.isnan(x), np.isnan(ref), err_msg=where)
            moved = np.nan_to_num(np.abs(x.astype(np.float64) - ref.astype(np.float64)))
            if np.issubdtype(ref.dtype, np.integer):
                assert moved.sum() <= 2 * near, where
            else:
                bound = 2.0 * near / n_valid if name == "expected_calibration_error" else near
                assert np.all(moved <= 1e-5 + bound + 1e-4 * np.nan_to_num(np.abs(ref))), where
        elif np.issubdtype(ref.dtype, np.floating):
            np.testing.assert_allclose(x, ref, rtol=1e-4, atol=1e-5, err_msg=where)
        else:
            np.testing.assert_array_equal(x, ref, err_msg=where)


@pytest.fixture(scope="module")
def runtimes(exported: dict[str, Path]) -> dict[str, Run]:
    session = onnxruntime.InferenceSession(str(exported["evaluation.onnx"]))
    names = [i.name for i in session.get_inputs()]
    scripted = torch.jit.load(str(exported["evaluation.torchscript.pt"]))
    program = torch.export.load(exported["evaluation.pt2"]).module()
    return {
        "onnxruntime": lambda i: session.run(
            None, {n: t.numpy() for n, t in zip(names, i, strict=True)}
        ),
        "torchscript": lambda i: flat(scripted(*i)),
        "torch.export": lambda i: flat(program(*i)),
    }


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_every_runtime_matches_eager(case: Case, runtimes: dict[str, Run]) -> None:
    inputs = case.inputs()
    with torch.no_grad():
        want = flat(EvaluationStep()(*inputs))
        for runtime, run in runtimes.items():
            assert_outputs_match(list(run(inputs)), want, f"{runtime} {case.name}")


def test_one_onnx_session_serves_many_shapes(exported: dict[str, Path]) -> None:
    session = onnxruntime.InferenceSession(str(exported["evaluation.onnx"]))
    names = [i.name for i in session.get_inputs()]
    for n, c in [(5, 3), (300, 1000), (1, 2), (64, 10), (5, 3)]:
        inputs = Case(n, c, 2.0, True, 0.3, 3.0).inputs()
        got = session.run(None, {name: t.numpy() for name, t in zip(names, inputs, strict=True)})
        assert got[NAMES.index("confusion_matrix")].shape == (c, c)
        assert got[NAMES.index("focal_loss")].shape == (n,)
        assert_outputs_match(got, flat(EvaluationStep()(*inputs)), f"N={n} C={c}")


# multi-label: every N x L pair up to 4M elements, parameters cycled, all-positive and
# all-negative targets per L; ranking: the multi-class pairs up to 4M elements
LABEL_CASES = label_sweep(
    ns=(1, 7, 4096, 20_000), ls=(1, 3, 10, 100, 1000), max_elements=4096 * 1000, seed=1
)
RANKING_CASES = sweep(
    ns=(1, 7, 4096, 20_000), cs=(2, 3, 10, 100, 1000), max_elements=4096 * 1000, seed=1
)


def answer(outputs: Sequence[np.ndarray]) -> Runner:
    """A runner that gives ``outputs``: a result already computed, for :func:`measure`."""
    return lambda _: outputs


def assert_runtimes_match_eager(kind: GraphKind, runtimes: dict[str, Runner], case: Named) -> None:
    """Each runtime within the export's tolerance (and edge slack) of eager, on one batch, and
    everything but the metrics (NaN where undefined) finite in every runtime."""
    inputs = kind.case_inputs(case)
    want = torch_runner(kind.module(Options()))(inputs)
    for runtime, run in {"eager": lambda _: want, **runtimes}.items():
        got = run(inputs)
        parity = measure(
            answer(got), answer(want), [case], kind.output_names, lambda _: inputs, kind.slack
        )
        assert parity.passed, f"{runtime}: {parity.failures}"
        for (output, group), array in zip(kind.outputs, got, strict=True):
            assert group == "metrics" or np.isfinite(array).all(), f"{runtime}: {output}"


@pytest.fixture(scope="module")
def multilabel_runtimes(exported: dict[str, Path]) -> dict[str, Runner]:
    scripted = torch.jit.load(str(exported["multilabel_evaluation.torchscript.pt"]))
    return {
        "onnxruntime": onnx_runner(exported["multilabel_evaluation.onnx"]),
        "torchscript": torch_runner(scripted),
    }


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in LABEL_CASES])
def test_every_multilabel_runtime_matches_eager(
    case: LabelCase, multilabel_runtimes: dict[str, Runner]
) -> None:
    assert_runtimes_match_eager(MULTILABEL_EVALUATION, multilabel_runtimes, case)


@pytest.fixture(scope="module")
def ranking_runtimes(exported: dict[str, Path]) -> dict[str, Runner]:
    return {"onnxruntime": onnx_runner(exported["ranking.onnx"])}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in RANKING_CASES])
def test_ranking_graph_matches_eager(case: Case, ranking_runtimes: dict[str, Runner]) -> None:
    assert_runtimes_match_eager(RANKING, ranking_runtimes, case)
