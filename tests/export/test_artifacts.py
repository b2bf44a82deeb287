"""The metrics and sigmoid graphs, the manifests, the shipped defaults, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import focal_eval.export.parity
import focal_eval.export.pipeline
from focal_eval.export import export_all
from focal_eval.export.cli import main
from focal_eval.export.fused import FUSED_KINDS, kernel_library
from focal_eval.export.kinds import (
    EVALUATION,
    KINDS,
    METRICS,
    GraphKind,
    Options,
    Sweeps,
    statistics,
)
from focal_eval.export.manifest import sha256_of
from focal_eval.export.onnx import graph_signature
from focal_eval.export.sweeps import Case, LabelCase
from focal_eval.focal import (
    Metrics,
    MultilabelStatistics,
    RankingStatistics,
    Statistics,
    compute,
    compute_multilabel,
    merge,
    merge_multilabel,
    merge_ranking,
    ranking,
    update,
    update_multilabel,
    update_ranking,
)
from focal_eval.service.artifacts import default_artifact_dir, load_artifacts, open_session
from tests.export.exports import Exported
from tests.focal.reference import sigmoid_focal_loss64


def run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return list(onnxruntime.InferenceSession(str(path)).run(None, feeds))


@pytest.mark.parametrize("c", [2, 10, 300])
def test_metrics_graph_on_merged_statistics_equals_eager_on_concatenation(
    exported: dict[str, Path], c: int
) -> None:
    batches = [Case(n, c, 2.0, True, 0.2, 3.0, seed=s).inputs() for s, n in enumerate((50, 1, 400))]
    alpha = batches[0][2]
    statistics = [update(b[0], b[1], alpha, 2.0)[1] for b in batches]
    merged = merge(merge(statistics[0], statistics[1]), statistics[2])
    feeds = {name: t.numpy() for name, t in zip(Statistics._fields, merged, strict=True)}
    got = run(exported["metrics.onnx"], feeds)
    logits = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    want = compute(update(logits, labels, alpha, 2.0)[1])
    for name, x, ref in zip(Metrics._fields, got, want, strict=True):
        np.testing.assert_allclose(x, ref.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def assert_metrics_equal(got: list[np.ndarray], want: tuple[torch.Tensor, ...]) -> None:
    for x, ref in zip(got, want, strict=True):
        np.testing.assert_allclose(x, ref.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("num_labels", [1, 10, 300])
def test_multilabel_metrics_graph_on_merged_statistics_equals_eager_on_concatenation(
    exported: dict[str, Path], num_labels: int
) -> None:
    batches = [
        LabelCase(n, num_labels, 2.0, 0.25, 0.3, 0.2, 3.0, seed=s).inputs()
        for s, n in enumerate((50, 1, 400))
    ]
    statistics = [update_multilabel(b[0], b[1], 0.25, 2.0, 0.3)[1] for b in batches]
    merged = merge_multilabel(merge_multilabel(statistics[0], statistics[1]), statistics[2])
    feeds = {name: t.numpy() for name, t in zip(MultilabelStatistics._fields, merged, strict=True)}
    logits = torch.cat([b[0] for b in batches])
    targets = torch.cat([b[1] for b in batches])
    want = compute_multilabel(update_multilabel(logits, targets, 0.25, 2.0, 0.3)[1])
    assert_metrics_equal(run(exported["multilabel_metrics.onnx"], feeds), want)


@pytest.mark.parametrize("c", [2, 10, 300])
def test_ranking_metrics_graph_on_merged_histograms_equals_eager_on_concatenation(
    exported: dict[str, Path], c: int
) -> None:
    batches = [
        Case(n, c, 2.0, False, 0.2, 3.0, seed=s).inputs() for s, n in enumerate((50, 1, 400))
    ]
    histograms = [update_ranking(b[0], b[1]) for b in batches]
    merged = merge_ranking(merge_ranking(histograms[0], histograms[1]), histograms[2])
    feeds = {name: t.numpy() for name, t in zip(RankingStatistics._fields, merged, strict=True)}
    logits = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    want = ranking(*update_ranking(logits, labels))
    assert_metrics_equal(run(exported["ranking_metrics.onnx"], feeds), want)


def test_metrics_inputs_signature_is_the_graphs_own(exported: dict[str, Path]) -> None:
    inputs, _ = graph_signature(exported["metrics.onnx"])
    assert METRICS.signature(Options())[0] == inputs
    assert [entry["name"] for entry in inputs] == list(Statistics._fields)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_exported_sigmoid_loss_is_finite_and_matches_float64(
    exported: dict[str, Path], scale: float
) -> None:
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((200, 4)) * scale).astype(np.float32)
    targets = (rng.random((200, 4)) < 0.3).astype(np.float32)
    (loss,) = run(exported["sigmoid_focal_loss.onnx"], {"logits": logits, "targets": targets})
    assert np.isfinite(loss).all()
    defaults = json.loads(
        Path(str(exported["sigmoid_focal_loss.onnx"]) + ".manifest.json").read_text()
    )
    gamma = defaults["defaults"]["gamma"]
    expected = sigmoid_focal_loss64(logits, targets, 0.25, gamma)
    np.testing.assert_allclose(loss, expected, rtol=1e-4, atol=1e-5)


def manifest_of(artifact: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(Path(f"{artifact}.manifest.json").read_text())
    return manifest


MULTICLASS_DEFAULTS = {"gamma": 2.0, "ignore_index": -100, "num_bins": 15, "alpha": None}
MULTILABEL_DEFAULTS = {
    "gamma": 2.0,
    "alpha": 0.25,
    "threshold": 0.5,
    "ignore_index": -100,
    "num_bins": 15,
    "score_bins": 100,
}
RANKING_DEFAULTS = {"ignore_index": -100, "score_bins": 100}
DEFAULTS = {
    "evaluation": MULTICLASS_DEFAULTS,
    "evaluation_statistics": MULTICLASS_DEFAULTS,
    "metrics": MULTICLASS_DEFAULTS,
    "sigmoid_focal_loss": MULTICLASS_DEFAULTS,
    "multilabel_evaluation": MULTILABEL_DEFAULTS,
    "multilabel_evaluation_statistics": MULTILABEL_DEFAULTS,
    "multilabel_metrics": MULTILABEL_DEFAULTS,
    "ranking": RANKING_DEFAULTS,
    "ranking_statistics": RANKING_DEFAULTS,
    "ranking_metrics": RANKING_DEFAULTS,
    "fused_evaluation": MULTICLASS_DEFAULTS,
    "fused_multilabel_evaluation": MULTILABEL_DEFAULTS,
    "fused_evaluation_ranking": MULTICLASS_DEFAULTS,
}
# the fused graphs are written where the kernel library was built, as here (a C++ compiler)
FUSED_FILES = [f"{kind.name}.onnx" for kind in FUSED_KINDS]
ONNX_FILES = [*(f"{kind.name}.onnx" for kind in KINDS), *FUSED_FILES]


def test_every_manifest_is_complete_and_true(exported: dict[str, Path]) -> None:
    assert set(exported) == {
        *ONNX_FILES,
        "evaluation.torchscript.pt",
        "multilabel_evaluation.torchscript.pt",
        "evaluation.pt2",
    }
    for name, path in exported.items():
        manifest = manifest_of(path)
        kind = name.split(".")[0]
        assert manifest["format_version"] == 1
        assert manifest["file"] == name
        assert manifest["kind"] == kind
        assert manifest["sha256"] == sha256_of(path)
        assert manifest["defaults"] == DEFAULTS[kind]
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


@pytest.mark.parametrize("name", ONNX_FILES)
def test_onnx_manifest_shapes_are_the_graphs_own(exported: dict[str, Path], name: str) -> None:
    manifest = manifest_of(exported[name])
    graph = onnx.load(exported[name]).graph

    def declared(values: object) -> list[tuple[str, str, list[object]]]:
        return [
            (
                v.name,
                str(onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)),
                [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            )
            for v in values  # type: ignore[attr-defined]
        ]

    def described(entries: object) -> list[tuple[str, str, list[object]]]:
        return [(e["name"], e["dtype"], e["shape"]) for e in entries]  # type: ignore[attr-defined]

    assert declared(graph.input) == described(manifest["inputs"])
    assert declared(graph.output) == described(manifest["outputs"])
    assert manifest["opset"] == next(
        o.version for o in onnx.load(exported[name]).opset_import if o.domain == ""
    )


def test_evaluation_manifest_describes_every_output(exported: dict[str, Path]) -> None:
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
    scripted = torch.jit.load(str(exported["evaluation.torchscript.pt"]))
    flat = [t for group in scripted(*Case(9, 4, 2.0, False, 0.0, 1.0).inputs()) for t in group]
    assert [str(t.dtype).removeprefix("torch.") for t in flat] == [e["dtype"] for e in outputs]


def entry(name: str, dtype: str, shape: list[Any], group: str = "") -> dict[str, Any]:
    described: dict[str, Any] = {"name": name, "dtype": dtype, "shape": shape}
    return described | ({"group": group} if group else {})


def ungroup(described: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in described.items() if key != "group"}


def test_multilabel_manifest_describes_every_tensor(exported: dict[str, Path]) -> None:
    manifest = manifest_of(exported["multilabel_evaluation.onnx"])
    assert manifest["inputs"] == [
        entry("logits", "float32", ["N", "L"]),
        entry("targets", "int64", ["N", "L"]),
        entry("alpha", "float32", []),
        entry("gamma", "float32", []),
        entry("threshold", "float32", []),
        entry("ignore_index", "int64", []),
    ]
    outputs = manifest["outputs"]
    assert isinstance(outputs, list)
    by_name = {e["name"]: e for e in outputs}
    assert by_name["focal_loss"] == entry("focal_loss", "float32", ["N"], "per_sample")
    assert by_name["label_errors"] == entry("label_errors", "int64", ["N"], "per_sample")
    assert by_name["true_positive"] == entry("true_positive", "int64", ["L"], "statistics")
    assert by_name["bin_count"] == entry("bin_count", "int64", [15], "statistics")
    assert by_name["samples"] == entry("samples", "int64", [], "statistics")
    assert by_name["positive_histogram"] == entry(
        "positive_histogram", "int64", ["L", 100], "statistics"
    )
    assert by_name["micro_f1"] == entry("micro_f1", "float64", [], "metrics")
    assert by_name["auroc"] == entry("auroc", "float64", ["L"], "metrics")
    assert by_name["support"] == entry("support", "int64", ["L"], "metrics")
    assert [e["group"] for e in outputs] == ["per_sample"] * 3 + ["statistics"] * 15 + [
        "metrics"
    ] * 20
    scripted = torch.jit.load(str(exported["multilabel_evaluation.torchscript.pt"]))
    inputs = LabelCase(9, 4, 2.0, 0.25, 0.5, 0.0, 1.0).inputs()
    flat = [t for group in scripted(*inputs) for t in group]
    assert [str(t.dtype).removeprefix("torch.") for t in flat] == [e["dtype"] for e in outputs]
    metrics = manifest_of(exported["multilabel_metrics.onnx"])
    assert metrics["inputs"] == [ungroup(e) for e in outputs[3:18]]
    assert metrics["outputs"] == [ungroup(e) for e in outputs[18:]]


def test_ranking_manifest_describes_every_tensor(exported: dict[str, Path]) -> None:
    manifest = manifest_of(exported["ranking.onnx"])
    assert manifest["inputs"] == [
        entry("logits", "float32", ["N", "C"]),
        entry("labels", "int64", ["N"]),
        entry("ignore_index", "int64", []),
    ]
    histograms = [
        entry(name, "int64", ["C", 100], "statistics")
        for name in ("positive_histogram", "negative_histogram")
    ]
    metrics = [
        entry(name, "float64", shape, "metrics")
        for name, shape in (
            ("auroc", ["C"]),
            ("average_precision", ["C"]),
            ("macro_auroc", []),
            ("macro_average_precision", []),
            ("micro_auroc", []),
            ("micro_average_precision", []),
        )
    ]
    assert manifest["outputs"] == histograms + metrics
    graph = manifest_of(exported["ranking_metrics.onnx"])
    assert graph["inputs"] == [ungroup(e) for e in histograms]
    assert graph["outputs"] == [ungroup(e) for e in metrics]


def test_the_service_loads_every_exported_graph(exported: dict[str, Path]) -> None:
    directory = exported["evaluation.onnx"].parent
    artifacts = load_artifacts(directory)
    assert sorted(artifacts) == sorted(kind.name for kind in (*KINDS, *FUSED_KINDS))
    library = kernel_library()
    assert library is not None
    for kind, artifact in artifacts.items():
        session = open_session(artifact, 1, [library])
        assert [i.name for i in session.get_inputs()] == artifact.input_names, kind
    scripted = load_artifacts(directory, "torchscript")
    assert sorted(scripted) == ["evaluation", "multilabel_evaluation"]


def case_feeds(kind: GraphKind, case: object) -> dict[str, np.ndarray]:
    """A case's inputs for ``kind``'s graph: a step's own, a metrics graph's statistics."""
    inputs = kind.case_inputs(case)
    if kind.merged is not None:
        inputs = tuple(statistics(kind.merged.step.module(Options()), inputs))
    return {name: t.numpy() for name, t in zip(kind.inputs, inputs, strict=True)}


SHIPPED_CASES = Sweeps(
    [Case(33, 7, 2.0, True, 0.3, 3.0), Case(5, 2, 0.5, False, 0.0, 1e4)],
    [LabelCase(33, 7, 2.0, 0.25, 0.3, 0.3, 3.0), LabelCase(5, 1, 0.5, -1.0, 0.5, 0.0, 1e4)],
)


@pytest.mark.parametrize("name", ["evaluation.onnx", "evaluation_statistics.onnx"])
def test_multiclass_graphs_read_the_logits_in_an_argmax_and_a_subtraction(name: str) -> None:
    """Besides their shape and a flat view for the gathers, nothing else reads the ``(N, C)``
    logits (the row maximum is gathered at the argmax); row sums of squares are a vectorised
    ``ReduceSum`` (export/lowering.py), not ``ReduceL2`` or ``ReduceSumSquare``."""
    graph = onnx.load(default_artifact_dir() / name).graph
    readers = sorted(node.op_type for node in graph.node if "logits" in node.input)
    assert [op for op in readers if op != "Shape"] == ["ArgMax", "Reshape", "Sub"]
    assert not {"ReduceL2", "ReduceSumSquare"} & {node.op_type for node in graph.node}


@pytest.mark.parametrize("kind", [pytest.param(kind, id=kind.name) for kind in KINDS])
def test_shipped_default_artifacts_equal_a_fresh_export(
    exported: dict[str, Path], kind: GraphKind
) -> None:
    name = f"{kind.name}.onnx"
    shipped = default_artifact_dir() / name
    fresh = manifest_of(exported[name])
    manifest = json.loads((default_artifact_dir() / f"{name}.manifest.json").read_text())
    for field in ("kind", "format", "opset", "inputs", "outputs", "defaults"):
        assert manifest[field] == fresh[field], field
    assert manifest["sha256"] == sha256_of(shipped)
    assert manifest["parity"]["passed"] is True
    fresh_graph, shipped_graph = onnx.load(exported[name]).graph, onnx.load(shipped).graph
    assert [n.op_type for n in shipped_graph.node] == [n.op_type for n in fresh_graph.node]
    for case in kind.cases(SHIPPED_CASES):
        feeds = case_feeds(kind, case)
        for got, want in zip(run(shipped, feeds), run(exported[name], feeds), strict=True):
            np.testing.assert_array_equal(got, want)


def test_cli_writes_artifacts_and_prints_the_parity_table(
    exported_with_options: Exported,
) -> None:
    """``focal export --formats onnx --gamma 1.5 --num-bins 10 --score-bins 20`` (``OPTIONS``)."""
    table = exported_with_options.table  # it exited 0, or the fixture failed with its output
    assert [line.split()[0] for line in table.splitlines()[2:-1]] == ONNX_FILES
    assert "FAILED" not in table

    def manifest(kind: str) -> dict[str, Any]:
        return manifest_of(exported_with_options.out / f"{kind}.onnx")

    assert manifest("evaluation")["defaults"]["gamma"] == 1.5
    assert manifest("multilabel_evaluation")["defaults"] == MULTILABEL_DEFAULTS | {
        "gamma": 1.5,
        "num_bins": 10,
        "score_bins": 20,
    }
    assert manifest("ranking_metrics")["defaults"] == {"ignore_index": -100, "score_bins": 20}
    shapes = {
        (kind, e["name"]): e["shape"]
        for kind in ("evaluation", "multilabel_evaluation", "ranking")
        for e in manifest(kind)["outputs"]
    }
    assert shapes["evaluation", "bin_count"] == [10]
    assert shapes["multilabel_evaluation", "bin_count"] == [10]
    assert shapes["multilabel_evaluation", "negative_histogram"] == ["L", 20]
    assert shapes["ranking", "positive_histogram"] == ["C", 20]


def test_export_all_reports_each_artifact_as_its_manifest_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library's answer (the CLI prints it): path, kind, format and parity, per artifact."""
    monkeypatch.setattr(focal_eval.export.pipeline, "KINDS", (METRICS,))  # small and quick
    monkeypatch.setattr(focal_eval.export.pipeline, "FUSED_KINDS", ())
    (report,) = export_all(tmp_path, cases=[Case(7, 3, 2.0, True, 0.3, 3.0)])
    manifest = manifest_of(report.path)
    assert report.path == tmp_path / "metrics.onnx"
    assert (report.kind, report.format) == (manifest["kind"], manifest["format"])
    assert report.parity.as_dict() == manifest["parity"]
    assert report.parity.passed


def test_cli_exits_non_zero_when_parity_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(focal_eval.export.parity, "ATOL", 0.0)
    monkeypatch.setattr(focal_eval.export.parity, "RTOL", 0.0)
    # the failure path on one graph (exporting every graph takes a minute); at zero tolerance
    # its float32 sums differ from eager's in the last bits, so its parity fails
    monkeypatch.setattr(focal_eval.export.pipeline, "KINDS", (EVALUATION,))
    monkeypatch.setattr(focal_eval.export.pipeline, "FUSED_KINDS", ())
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


@pytest.mark.parametrize("name", FUSED_FILES)
def test_shipped_fused_graphs_equal_a_fresh_export(exported: dict[str, Path], name: str) -> None:
    shipped = default_artifact_dir() / name
    fresh = manifest_of(exported[name])
    manifest = json.loads((default_artifact_dir() / f"{name}.manifest.json").read_text())
    for field in ("kind", "format", "opset", "inputs", "outputs", "defaults"):
        assert manifest[field] == fresh[field], field
    assert manifest["parity"]["passed"] is True
    assert shipped.read_bytes() == exported[name].read_bytes()
