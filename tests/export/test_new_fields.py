"""A new metric or statistic reaches every artifact by editing focal/ alone.

Each case (``tests/export/additions.py``) adds a field to a copy of focal/ the way a
contributor would, and exports that copy with the unmodified pipeline in a fresh interpreter:
every artifact must pass parity, and the manifests, the graphs and the derived functions must
carry the new field. A fresh process is the honest test: module-level names
(``Statistics._fields``, the generated ``merge`` and ``forward``) are fixed at import, so
patching ``focal`` in this process would test the patch, not the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from focal_eval.export.sweeps import Case
from focal_eval.focal import Metrics, PerSample, Statistics, compute, update
from tests.export.additions import ADDITIONS, AdditionExports
from tests.preparations import Preparations


@pytest.fixture(scope="module")
def addition_exports(preparations: Preparations) -> AdditionExports:
    """Each addition's export, started with the session (``tests/preparations.py``)."""
    return preparations.take("addition_exports", AdditionExports)


@pytest.fixture
def exported_addition(addition_exports: AdditionExports, name: str) -> tuple[Path, dict[str, Any]]:
    """Addition ``name``'s export, waited for: its artifacts folder and its script's report."""
    return addition_exports.finish(name)


def manifest(out: Path, artifact: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((out / f"{artifact}.manifest.json").read_text())
    return loaded


def names(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["name"] for entry in entries]


@pytest.mark.parametrize("name", ADDITIONS)
def test_a_new_field_reaches_every_artifact_from_focal_alone(
    name: str, exported_addition: tuple[Path, dict[str, Any]]
) -> None:
    addition = ADDITIONS[name]
    out, report = exported_addition
    added = [addition.statistic] if addition.statistic else []
    statistics = [*Statistics._fields, *added]
    metrics = [*Metrics._fields, addition.metric]

    # every artifact written and within tolerance of eager, the new outputs included; the
    # fused graph too while the kernel computes every statistic (a new one needs the kernel)
    fused: dict[str, list[str]] = {"fused_multilabel_evaluation.onnx": []}
    if not addition.statistic:  # a new multi-class statistic needs the kernel too
        fused |= {"fused_evaluation.onnx": [], "fused_evaluation_ranking.onnx": []}
    assert report["failures"] == fused | {
        "evaluation.onnx": [],
        "evaluation_statistics.onnx": [],
        "metrics.onnx": [],
        "sigmoid_focal_loss.onnx": [],
        "multilabel_evaluation.onnx": [],
        "multilabel_evaluation_statistics.onnx": [],
        "multilabel_metrics.onnx": [],
        "ranking.onnx": [],
        "ranking_statistics.onnx": [],
        "ranking_metrics.onnx": [],
        "evaluation.torchscript.pt": [],
        "multilabel_evaluation.torchscript.pt": [],
        "evaluation.pt2": [],
    }
    # merge, empty_statistics and the metrics module follow Statistics._fields (scripted)
    assert report["statistics"] == statistics
    assert list(report["empty"]) == statistics
    assert all(zero for _, zero in report["empty"].values())
    assert report["merge_sums"] == [True] * len(statistics)
    assert report["scripted_metrics_match"] == [True] * len(metrics)
    if addition.statistic:
        assert report["empty"][addition.statistic][0] == [3]

    # manifests: old names in their old order, the new ones last in their group
    for artifact in ("evaluation.onnx", "evaluation.torchscript.pt", "evaluation.pt2"):
        outputs = manifest(out, artifact)["outputs"]
        assert names(outputs) == [*PerSample._fields, *statistics, *metrics], artifact
        by_name = {entry["name"]: entry for entry in outputs}
        assert by_name[addition.metric] == {
            "name": addition.metric,
            "dtype": "float64",
            "shape": [],
            "group": "metrics",
        }
        if addition.statistic:
            assert by_name[addition.statistic]["shape"] == ["C"]
            assert by_name[addition.statistic]["group"] == "statistics"
    # the statistics-only graph (a server's chunks) gives the new statistic, and no metrics
    chunks = manifest(out, "evaluation_statistics.onnx")["outputs"]
    assert names(chunks) == [*PerSample._fields, *statistics]
    metrics_manifest = manifest(out, "metrics.onnx")
    assert names(metrics_manifest["inputs"]) == statistics
    assert names(metrics_manifest["outputs"]) == metrics
    graph = onnx.load(out / "metrics.onnx").graph
    assert [v.name for v in graph.input] == statistics
    assert [v.name for v in graph.output] == metrics

    # the metrics graph reads the new statistic, with C dynamic (exported at C = 5)
    logits, labels, alpha, _, _ = Case(40, 4, 2.0, True, 0.2, 2.0).inputs()
    current = update(logits, labels, alpha)[1]
    feeds = {name: t.numpy() for name, t in zip(Statistics._fields, current, strict=True)}
    valid = labels != -100
    p_true = torch.softmax(logits.double(), 1)[valid, labels[valid]].numpy()
    if addition.statistic:
        sums = np.zeros(4)
        np.add.at(sums, labels[valid].numpy(), p_true)
        feeds[addition.statistic] = sums
    got = dict(
        zip(
            metrics,
            onnxruntime.InferenceSession(str(out / "metrics.onnx")).run(None, feeds),
            strict=True,
        )
    )
    for name, want in zip(Metrics._fields, compute(current), strict=True):
        np.testing.assert_allclose(got[name], want.numpy(), rtol=1e-12, err_msg=name)
    accuracy = float(compute(current).accuracy)
    expected = {"error_rate": 1.0 - accuracy, "mean_true_probability": p_true.mean()}
    np.testing.assert_allclose(got[addition.metric], expected[addition.metric], rtol=1e-6)
