"""The server-side loader: finds artifacts by manifest, refuses anything that does not verify."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from focal_eval.service.artifacts import (
    ArtifactError,
    default_artifact_dir,
    find_artifact,
    load_artifact,
    load_artifacts,
    open_session,
)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """A writable copy of the shipped artifacts."""
    return Path(shutil.copytree(default_artifact_dir(), tmp_path / "artifacts"))


def rewrite_manifest(directory: Path, name: str, **changes: object) -> None:
    path = directory / f"{name}.manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_shipped_artifacts_load_and_open() -> None:
    evaluation = find_artifact(default_artifact_dir(), "evaluation")
    metrics = find_artifact(default_artifact_dir(), "metrics")
    session = open_session(evaluation, intra_op_threads=1)
    assert [i.name for i in session.get_inputs()] == evaluation.input_names
    assert evaluation.input_names == ["logits", "labels", "alpha", "gamma", "ignore_index"]
    assert evaluation.sha256 == hashlib.sha256(evaluation.content).hexdigest()
    assert evaluation.defaults["gamma"] == 2.0
    assert metrics.output_names[:2] == ["accuracy", "balanced_accuracy"]


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(flip_a_byte, "does not match its manifest", id="corrupt"),
        pytest.param(truncate, "does not match its manifest", id="truncated"),
        pytest.param(
            lambda p: p.unlink(),
            "cannot read the artifact (No such file or directory)",
            id="missing-file",
        ),
        pytest.param(
            lambda p: (p.parent / f"{p.name}.manifest.json").unlink(),
            "manifest evaluation.onnx.manifest.json is missing",
            id="missing-manifest",
        ),
    ],
)
def test_damaged_artifact_is_refused_with_a_clear_error(
    artifacts: Path, damage: Callable[[Path], None], message: str
) -> None:
    damage(artifacts / "evaluation.onnx")
    with pytest.raises(ArtifactError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_artifact(artifacts / "evaluation.onnx")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param(
            {"sha256": "0" * 64},
            r"sha256 [0-9a-f]{64} does not match its manifest \(0{64}\)",
            id="wrong-hash",
        ),
        pytest.param(
            {"format_version": 2},
            r"format_version 2 is not supported \(this server reads version 1\)",
            id="version",
        ),
        pytest.param(
            {"file": "other.onnx"},
            r"describes 'other.onnx', not 'evaluation.onnx'",
            id="other-file",
        ),
        pytest.param(
            {"parity": {"passed": False, "failures": ["x"]}},
            r"failed its parity check at export",
            id="parity",
        ),
    ],
)
def test_manifest_that_does_not_fit_is_refused(
    artifacts: Path, changes: dict[str, object], message: str
) -> None:
    rewrite_manifest(artifacts, "evaluation.onnx", **changes)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(artifacts / "evaluation.onnx")


def test_malformed_manifest_is_refused(artifacts: Path) -> None:
    (artifacts / "evaluation.onnx.manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not a readable JSON manifest"):
        load_artifact(artifacts / "evaluation.onnx")
    (artifacts / "evaluation.onnx.manifest.json").write_text('{"kind": "evaluation"}')
    with pytest.raises(ArtifactError, match=r"missing fields \['format_version', 'format', 'file'"):
        load_artifact(artifacts / "evaluation.onnx")


def test_bytes_onnxruntime_cannot_load_are_refused(artifacts: Path) -> None:
    garbage = b"not an onnx model"
    (artifacts / "evaluation.onnx").write_bytes(garbage)
    rewrite_manifest(artifacts, "evaluation.onnx", sha256=hashlib.sha256(garbage).hexdigest())
    artifact = load_artifact(artifacts / "evaluation.onnx")
    with pytest.raises(ArtifactError, match="onnxruntime cannot load it"):
        open_session(artifact, intra_op_threads=1)


def test_graph_that_is_not_the_manifests_is_refused(artifacts: Path) -> None:
    metrics = artifacts / "metrics.onnx"
    shutil.copy(metrics, artifacts / "evaluation.onnx")
    rewrite_manifest(
        artifacts, "evaluation.onnx", sha256=hashlib.sha256(metrics.read_bytes()).hexdigest()
    )
    with pytest.raises(ArtifactError, match=r"the graph's inputs \['confusion_matrix'"):
        open_session(load_artifact(artifacts / "evaluation.onnx"), intra_op_threads=1)


def test_find_artifact_needs_exactly_one_match(artifacts: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ArtifactError,
        match=r"expected one torchscript artifact of kind 'evaluation' in .*, found none"
        r" \(torchscript kinds there: none\)",
    ):
        find_artifact(artifacts, "evaluation", "torchscript")
    shutil.copy(artifacts / "evaluation.onnx", artifacts / "copy.onnx")
    manifest = json.loads((artifacts / "evaluation.onnx.manifest.json").read_text())
    (artifacts / "copy.onnx.manifest.json").write_text(json.dumps(manifest | {"file": "copy.onnx"}))
    with pytest.raises(
        ArtifactError, match=r"found copy\.onnx\.manifest\.json, evaluation\.onnx\.manifest\.json"
    ):
        find_artifact(artifacts, "evaluation")
    with pytest.raises(ArtifactError, match="does not exist"):
        find_artifact(tmp_path / "nowhere", "evaluation")


def test_every_kind_a_manifest_declares_is_loaded() -> None:
    artifacts = load_artifacts(default_artifact_dir())
    assert set(artifacts) == {
        "evaluation",
        "evaluation_statistics",
        "metrics",
        "sigmoid_focal_loss",
        "multilabel_evaluation",
        "multilabel_evaluation_statistics",
        "multilabel_metrics",
        "ranking",
        "ranking_statistics",
        "ranking_metrics",
        "fused_evaluation",
        "fused_evaluation_ranking",
        "fused_multilabel_evaluation",
    }
    assert all(artifact.kind == kind for kind, artifact in artifacts.items())


def test_a_kind_that_is_not_there_is_refused_naming_the_kinds_that_are(artifacts: Path) -> None:
    with pytest.raises(ArtifactError) as caught:
        find_artifact(artifacts, "calibration")
    assert str(caught.value) == (
        f"expected one onnx artifact of kind 'calibration' in {artifacts}, found none"
        " (onnx kinds there: evaluation, evaluation_statistics, fused_evaluation,"
        " fused_evaluation_ranking, fused_multilabel_evaluation, metrics, multilabel_evaluation,"
        " multilabel_evaluation_statistics, multilabel_metrics, ranking, ranking_metrics,"
        " ranking_statistics, sigmoid_focal_loss)"
    )
