"""The metrics and sigmoid graphs, the manifests, the shipped defaults, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import focal_eval.export.parity
from focal_eval.export import ArtifactReport
from focal_eval.export.cli import main
from focal_eval.export.manifest import sha256_of
from focal_eval.export.onnx import graph_signature
from focal_eval.export.parity import Case
from focal_eval.export.pipeline import metrics_inputs_signature
from focal_eval.focal import Metrics, Statistics, compute, merge, update
from focal_eval.service.artifacts import default_artifact_dir
from focal_eval.service.cli import main as focal_main
from tests.focal.reference import sigmoid_focal_loss64


def run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return list(onnxruntime.InferenceSession(str(path)).run(None, feeds))


def evaluation_feeds(case: Case) -> dict[str, np.ndarray]:
    names = ("logits", "labels", "alpha", "gamma", "ignore_index")
    return {name: t.numpy() for name, t in zip(names, case.inputs(), strict=True)}


@pytest.mark.parametrize("c", [2, 10, 300])
def test_metrics_graph_on_merged_statistics_equals_eager_on_concatenation(
    exported: dict[str, ArtifactReport], c: int
) -> None:
    batches = [Case(n, c, 2.0, True, 0.2, 3.0, seed=s).inputs() for s, n in enumerate((50, 1, 400))]
    alpha = batches[0][2]
    statistics = [update(b[0], b[1], alpha, 2.0)[1] for b in batches]
    merged = merge(merge(statistics[0], statistics[1]), statistics[2])
    feeds = {name: t.numpy() for name, t in zip(Statistics._fields, merged, strict=True)}
    got = run(exported["metrics.onnx"].path, feeds)
    logits = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    want = compute(update(logits, labels, alpha, 2.0)[1])
    for name, x, ref in zip(Metrics._fields, got, want, strict=True):
        np.testing.assert_allclose(x, ref.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_metrics_inputs_signature_is_the_graphs_own(exported: dict[str, ArtifactReport]) -> None:
    inputs, _ = graph_signature(exported["metrics.onnx"].path)
    assert metrics_inputs_signature(15) == inputs
    assert [entry["name"] for entry in inputs] == list(Statistics._fields)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_exported_sigmoid_loss_is_finite_and_matches_float64(
    exported: dict[str, ArtifactReport], scale: float
) -> None:
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((200, 4)) * scale).astype(np.float32)
    targets = (rng.random((200, 4)) < 0.3).astype(np.float32)
    (loss,) = run(exported["sigmoid_focal_loss.onnx"].path, {"logits": logits, "targets": targets})
    assert np.isfinite(loss).all()
    defaults = json.loads(
        Path(str(exported["sigmoid_focal_loss.onnx"].path) + ".manifest.json").read_text()
    )
    gamma = defaults["defaults"]["gamma"]
    expected = sigmoid_focal_loss64(logits, targets, 0.25, gamma)
    np.testing.assert_allclose(loss, expected, rtol=1e-4, atol=1e-5)


def manifest_of(report: ArtifactReport) -> dict[str, object]:
    path = report.path.with_name(report.path.name + ".manifest.json")
    manifest: dict[str, object] = json.loads(path.read_text())
    return manifest


def test_every_manifest_is_complete_and_true(exported: dict[str, ArtifactReport]) -> None:
    assert set(exported) == {
        "evaluation.onnx",
        "metrics.onnx",
        "sigmoid_focal_loss.onnx",
        "evaluation.torchscript.pt",
        "evaluation.pt2",
    }
    for name, report in exported.items():
        manifest = manifest_of(report)
        assert manifest["format_version"] == 1
        assert manifest["file"] == name
        assert manifest["sha256"] == sha256_of(report.path)
        assert manifest["defaults"] == {
            "gamma": 2.0,
            "ignore_index": -100,
            "num_bins": 15,
            "alpha": None,
        }
        versions = manifest["versions"]
        assert isinstance(versions, dict)
        assert versions["torch"] == torch.__version__
        assert versions["onnxruntime"] == onnxruntime.__version__
        assert {"focal-eval", "onnx", "onnxscript", "numpy", "python"} <= set(versions)
        parity = manifest["parity"]
        assert isinstance(parity, dict)
        assert parity["passed"] is True
        assert parity["cases"] > 0
        assert ("opset" in manifest) == (manifest["format"] == "onnx")


@pytest.mark.parametrize("name", ["evaluation.onnx", "metrics.onnx", "sigmoid_focal_loss.onnx"])
def test_onnx_manifest_shapes_are_the_graphs_own(
    exported: dict[str, ArtifactReport], name: str
) -> None:
    manifest = manifest_of(exported[name])
    graph = onnx.load(exported[name].path).graph

    def declared(values: object) -> list[tuple[str, list[object]]]:
        return [
            (v.name, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
            for v in values  # type: ignore[attr-defined]
        ]

    assert declared(graph.input) == [(e["name"], e["shape"]) for e in manifest["inputs"]]  # type: ignore[attr-defined]
    assert declared(graph.output) == [(e["name"], e["shape"]) for e in manifest["outputs"]]  # type: ignore[attr-defined]
    assert manifest["opset"] == next(
        o.version for o in onnx.load(exported[name].path).opset_import if o.domain == ""
    )


def test_evaluation_manifest_describes_every_output(exported: dict[str, ArtifactReport]) -> None:
    outputs = manifest_of(exported["evaluation.onnx"])["outputs"]
    assert isinstance(outputs, list)
    by_name = {entry["name"]: entry for entry in outputs}
    assert by_name["confusion_matrix"] == {
        "name": "confusion_matrix",
        "dtype": "int64",
        "shape": ["C", "C"],
        "group": "statistics",
    }
    assert by_name["focal_loss"]["shape"] == ["N"]
    assert by_name["bin_count"]["shape"] == [15]
    assert by_name["balanced_accuracy"] == {
        "name": "balanced_accuracy",
        "dtype": "float64",
        "shape": [],
        "group": "metrics",
    }
    scripted = torch.jit.load(str(exported["evaluation.torchscript.pt"].path))
    flat = [t for group in scripted(*Case(9, 4, 2.0, False, 0.0, 1.0).inputs()) for t in group]
    assert [str(t.dtype).removeprefix("torch.") for t in flat] == [e["dtype"] for e in outputs]


@pytest.mark.parametrize("name", ["evaluation.onnx", "metrics.onnx", "sigmoid_focal_loss.onnx"])
def test_shipped_default_artifacts_equal_a_fresh_export(
    exported: dict[str, ArtifactReport], name: str
) -> None:
    shipped = default_artifact_dir() / name
    fresh = manifest_of(exported[name])
    manifest = json.loads((default_artifact_dir() / f"{name}.manifest.json").read_text())
    for field in ("kind", "format", "opset", "inputs", "outputs", "defaults"):
        assert manifest[field] == fresh[field], field
    assert manifest["sha256"] == sha256_of(shipped)
    fresh_graph, shipped_graph = onnx.load(exported[name].path).graph, onnx.load(shipped).graph
    assert [n.op_type for n in shipped_graph.node] == [n.op_type for n in fresh_graph.node]
    cases = [
        Case(n, c, g, w, i, s)
        for n, c, g, w, i, s in [(33, 7, 2.0, True, 0.3, 3.0), (5, 2, 0.5, False, 0.0, 1e4)]
    ]
    for case in cases:
        if name == "evaluation.onnx":
            feeds = evaluation_feeds(case)
        elif name == "metrics.onnx":
            logits, labels, alpha, _, _ = case.inputs()
            _, statistics = update(logits, labels, alpha, case.gamma)
            feeds = {k: t.numpy() for k, t in zip(Statistics._fields, statistics, strict=True)}
        else:
            scores = case.inputs()[0].numpy()
            feeds = {"logits": scores, "targets": (scores > 0).astype(np.float32)}
        for got, want in zip(run(shipped, feeds), run(exported[name].path, feeds), strict=True):
            np.testing.assert_array_equal(got, want)


def test_cli_writes_artifacts_and_prints_the_parity_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        focal_main(["export", "--out", str(tmp_path), "--formats", "onnx", "--gamma", "1.5"]) == 0
    )
    table = capsys.readouterr().out
    assert "evaluation.onnx" in table
    assert "metrics.onnx" in table
    assert "FAILED" not in table
    manifest = json.loads((tmp_path / "evaluation.onnx.manifest.json").read_text())
    assert manifest["defaults"]["gamma"] == 1.5


def test_cli_exits_non_zero_when_parity_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(focal_eval.export.parity, "ATOL", 0.0)
    monkeypatch.setattr(focal_eval.export.parity, "RTOL", 0.0)
    assert main(["--out", str(tmp_path), "--formats", "onnx"]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out
    assert "FAILED evaluation.onnx:" in captured.err
    manifest = json.loads((tmp_path / "evaluation.onnx.manifest.json").read_text())
    assert manifest["parity"]["passed"] is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["--opset", "17"], "Expected argument `opset` to be >= 18, but got 17", id="opset"
        ),
        pytest.param(
            ["--formats", "onnx,tflite"], "Expected argument `formats` among", id="format"
        ),
    ],
)
def test_cli_rejects_bad_arguments(
    tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
