"""Outputs are named by the manifest: a metric added to the graphs appears with no service edit.

A copy of the shipped artifacts gets one more metric, ``accuracy_again`` (an Identity of
``accuracy``), in both graphs and both manifests; the service, unchanged, must answer it in
``/score`` (one graph run, and chunks whose metrics come from the metrics graph), in the OpenAPI
document, on the v2 protocol, and in ``/summary``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import focal_eval.service.core.scoring
from focal_eval.service.app import create_app
from focal_eval.service.artifacts import default_artifact_dir
from focal_eval.service.core.scoring import Outputs
from focal_eval.service.core.settings import Settings
from tests.service._inputs import batch
from tests.service._requests import json_body
from tests.service.inference._triton import INFER, infer_body, parse
from tests.service.reference import METRICS, PER_SAMPLE, STATISTICS, eager

NEW = "accuracy_again"
COPIED = "accuracy"


def add_copied_metric(directory: Path, graph: str) -> None:
    """``graph`` gets the output ``NEW`` (float64 scalar, = ``COPIED``); its manifest too."""
    path = directory / graph
    model = onnx.load(path)
    model.graph.node.append(onnx.helper.make_node("Identity", [COPIED], [NEW], name=NEW))
    model.graph.output.append(onnx.helper.make_tensor_value_info(NEW, onnx.TensorProto.DOUBLE, []))
    onnx.checker.check_model(model)
    content = model.SerializeToString()
    path.write_bytes(content)
    manifest_path = directory / f"{graph}.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["outputs"].append({"name": NEW, "dtype": "float64", "shape": [], "group": "metrics"})
    manifest["sha256"] = hashlib.sha256(content).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=2))


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped artifacts, with ``NEW`` added to the evaluation and metrics graphs."""
    directory = tmp_path_factory.mktemp("manifest-names") / "artifacts"
    shutil.copytree(default_artifact_dir(), directory)
    for graph in ("evaluation.onnx", "metrics.onnx"):
        add_copied_metric(directory, graph)
    return directory


@pytest.fixture
def settings(make_settings: Callable[..., Settings], artifact_dir: Path) -> Settings:
    return make_settings(artifact_dir=artifact_dir)


@pytest.mark.parametrize(
    ("chunk", "fast_path", "metrics_graph_runs"),
    [
        pytest.param(None, False, 0, id="one_graph_run"),
        pytest.param(16, False, 1, id="chunks_and_the_metrics_graph"),
        pytest.param(None, True, 1, id="fused_graph_and_the_metrics_graph"),
    ],
)
def test_score_answers_the_new_metric(
    monkeypatch: pytest.MonkeyPatch,
    make_settings: Callable[..., Settings],
    artifact_dir: Path,
    chunk: int | None,
    fast_path: bool,
    metrics_graph_runs: int,
) -> None:
    metrics_runs: list[int] = []
    if chunk is not None:  # every batch over 16 rows is scored in chunks
        monkeypatch.setattr(
            focal_eval.service.core.scoring, "chunk_rows", lambda width, fused=False: chunk
        )
    logits, labels = batch(100, 4, seed=41, ignore=10)
    app = create_app(make_settings(artifact_dir=artifact_dir, fast_path=fast_path))
    with TestClient(app) as client:
        scorer = app.state.runtime.scorers.multiclass
        assert scorer.fast_path.live is fast_path
        compute_metrics = scorer.compute_metrics

        def counted(statistics: Mapping[str, np.ndarray]) -> Outputs:
            metrics_runs.append(1)
            outputs: Outputs = compute_metrics(statistics)
            return outputs

        monkeypatch.setattr(scorer, "compute_metrics", counted)
        response = client.post("/score", json=json_body(logits, labels))
    assert response.status_code == 200, response.text
    metrics = response.json()["metrics"]
    assert len(metrics_runs) == metrics_graph_runs
    assert NEW in metrics
    assert metrics[NEW] == metrics[COPIED]
    assert metrics[NEW] == pytest.approx(float(eager(logits, labels)[COPIED]), rel=1e-6)


def test_openapi_states_the_new_metric(app: FastAPI) -> None:
    metrics = app.openapi()["components"]["schemas"]["MulticlassMetrics"]
    assert metrics["properties"][NEW] == {
        "anyOf": [{"type": "number"}, {"type": "null"}],
        "title": "Accuracy Again",
    }
    assert NEW in metrics["required"]


def test_v2_metadata_and_inference_name_the_new_metric(client: TestClient) -> None:
    outputs = client.get("/v2/models/focal-eval").json()["outputs"]
    assert {"name": NEW, "datatype": "FP64", "shape": []} in outputs
    names = [entry["name"] for entry in outputs]  # the evaluation graph's, then ranking's
    assert names.index(NEW) == len(PER_SAMPLE + STATISTICS + METRICS)
    logits, labels = batch(30, 3, seed=42)
    body, headers = infer_body({"logits": logits, "labels": labels}, outputs=(COPIED, NEW))
    result = parse(client.post(INFER, content=body, headers=headers))
    assert result.get_output(NEW)["datatype"] == "FP64"
    assert result.as_numpy(NEW).shape == ()
    assert result.as_numpy(NEW) == result.as_numpy(COPIED)


def test_summary_computes_the_new_metric(client: TestClient) -> None:
    logits, labels = batch(30, 3, seed=43)
    assert client.post("/score", json=json_body(logits, labels)).json()["monitored"] is True
    lifetime = client.get("/summary").json()["sources"]["default"]["lifetime"]
    assert lifetime["metrics"][NEW] == lifetime["metrics"][COPIED]
