"""The v2 model layer: metadata and readiness by name and version, inputs to outputs.

Over the REST routes with tritonclient's codec; every output against eager focal/.
"""

# ruff: noqa: E501 (tables of requests and their exact error messages, one per line)

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from focal_eval import focal
from tests.service._inputs import batch
from tests.service.inference._triton import (
    INFER,
    LABELS,
    LOGITS,
    OUTPUTS,
    assert_outputs_equal_eager,
    infer_body,
    parse,
    request,
    tensor,
)
from tests.service.reference import (
    NUM_BINS,
    assert_error,
    assert_outputs,
    eager,
    eager_ranking,
)

RANKING = tuple(focal.RankingStatistics._fields + focal.Ranking._fields)

# --- metadata and readiness ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v2/models/focal-eval", "/v2/models/focal-eval/versions/1"])
def test_model_metadata_lists_inputs_and_outputs_with_dynamic_dims_as_minus_one(
    client: TestClient, path: str
) -> None:
    got = client.get(path).json()
    assert got["name"] == "focal-eval"
    assert got["versions"] == ["1"]
    assert got["inputs"] == [
        {"name": "logits", "datatype": "FP32", "shape": [-1, -1]},
        {"name": "labels", "datatype": "INT64", "shape": [-1]},
        {"name": "alpha", "datatype": "FP32", "shape": [-1]},
        {"name": "gamma", "datatype": "FP32", "shape": []},
        {"name": "ignore_index", "datatype": "INT64", "shape": []},
    ]
    outputs = {entry["name"]: entry for entry in got["outputs"]}
    assert set(outputs) == set(OUTPUTS) | set(RANKING)  # the opt-in ranking graph's too
    assert outputs["focal_loss"] == {"name": "focal_loss", "datatype": "FP32", "shape": [-1]}
    assert outputs["prediction"]["datatype"] == "INT64"
    assert outputs["confusion_matrix"] == {
        "name": "confusion_matrix",
        "datatype": "INT64",
        "shape": [-1, -1],
    }
    assert outputs["bin_count"]["shape"] == [NUM_BINS]
    assert outputs["accuracy"] == {"name": "accuracy", "datatype": "FP64", "shape": []}


@pytest.mark.parametrize(
    "path", ["/v2/models/focal-eval/ready", "/v2/models/focal-eval/versions/1/ready"]
)
def test_model_ready(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.json() == {"name": "focal-eval", "ready": True}


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        pytest.param("GET", "/v2/models/resnet", 'model "resnet" not found (this server serves ["focal-eval","focal-eval-multilabel"])', id="metadata_unknown_model"),
        pytest.param("GET", "/v2/models/resnet/ready", 'model "resnet" not found', id="ready_unknown_model"),
        pytest.param("POST", "/v2/models/resnet/infer", 'model "resnet" not found', id="infer_unknown_model"),
        pytest.param("GET", "/v2/models/focal-eval/versions/2", 'model "focal-eval" has no version "2" (versions: 1)', id="metadata_unknown_version"),
        pytest.param("GET", "/v2/models/focal-eval/versions/2/ready", 'model "focal-eval" has no version "2"', id="ready_unknown_version"),
        pytest.param("POST", "/v2/models/focal-eval/versions/2/infer", 'model "focal-eval" has no version "2"', id="infer_unknown_version"),
    ],
)  # fmt: skip
def test_unknown_model_or_version_is_404(
    client: TestClient, method: str, path: str, message: str
) -> None:
    response = client.request(method, path, json={"inputs": []})
    assert_error(response, 404, message)


# --- inputs and outputs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "scalar_shape", [pytest.param((), id="shape_empty"), pytest.param((1,), id="shape_1")]
)
@pytest.mark.parametrize(
    "binary", [pytest.param(False, id="json"), pytest.param(True, id="binary")]
)
def test_infer_alpha_gamma_and_ignore_index_inputs_are_honoured(
    client: TestClient, binary: bool, scalar_shape: tuple[int, ...]
) -> None:
    logits, labels = batch(36, 3, seed=23, ignore=5, ignore_index=-1)
    alpha = np.array([0.25, 1.0, 3.0], np.float32)
    arrays = {
        "logits": logits,
        "labels": labels,
        "alpha": alpha,
        "gamma": np.full(scalar_shape, 0.75, np.float32),
        "ignore_index": np.full(scalar_shape, -1, np.int64),
    }
    body, headers = infer_body(arrays, binary=binary)
    result = parse(client.post(INFER, content=body, headers=headers))
    assert_outputs_equal_eager(result, eager(logits, labels, alpha, 0.75, -1))
    assert int(result.as_numpy("confusion_matrix").sum()) == 31


def test_infer_returns_only_the_requested_outputs_in_order(client: TestClient) -> None:
    logits, labels = batch(10, 3, seed=24)
    wanted = ("accuracy", "confusion_matrix", "focal_loss")
    body, headers = infer_body({"logits": logits, "labels": labels}, outputs=wanted)
    result = parse(client.post(INFER, content=body, headers=headers))
    assert [o["name"] for o in result.get_response()["outputs"]] == list(wanted)
    want = eager(logits, labels)
    np.testing.assert_array_equal(result.as_numpy("confusion_matrix"), want["confusion_matrix"])
    np.testing.assert_allclose(result.as_numpy("focal_loss"), want["focal_loss"], 1e-4, 1e-5)


@pytest.mark.parametrize("binary", [True, False])
def test_infer_runs_the_ranking_graph_when_a_ranking_output_is_asked_for(
    client: TestClient, binary: bool
) -> None:
    logits, labels = batch(40, 4, seed=25, ignore=3)
    wanted = ("macro_auroc", "accuracy", "positive_histogram", "average_precision")
    arrays = {"logits": logits, "labels": labels}
    body, headers = infer_body(arrays, binary=binary, outputs=wanted)
    result = parse(client.post(INFER, content=body, headers=headers))
    assert [o["name"] for o in result.get_response()["outputs"]] == list(wanted)
    want = eager_ranking(logits, labels) | eager(logits, labels)
    assert_outputs({name: result.as_numpy(name) for name in wanted}, want, "v2")


# what the dataplane refuses (400), and values out of their domain it hands on (422)
BAD_REQUESTS = [
    pytest.param(request(tensor("logits", LOGITS)), 400, 'inputs: missing required input "labels"', id="missing_labels"),
    pytest.param(request(tensor("labels", LABELS)), 400, 'inputs: missing required input "logits"', id="missing_logits"),
    pytest.param(request(tensor("logits", LOGITS), tensor("labels", LABELS), tensor("weights", [1.0])), 400, 'inputs: unknown input "weights" (accepted: logits, labels, alpha, gamma, ignore_index)', id="unknown_input"),
    pytest.param(request(tensor("logits", LOGITS), tensor("labels", LABELS), outputs=[{"name": "auc"}]), 400, 'outputs[0]: no output named "auc"', id="unknown_output"),
    pytest.param(request(tensor("logits", LOGITS), tensor("labels", LABELS), tensor("gamma", [1.0, 2.0], "FP32")), 400, "inputs (gamma): expected one value (shape [] or [1]), got shape [2]", id="gamma_with_two_values"),
    pytest.param(request(tensor("logits", LOGITS), tensor("labels", [0, 2, 3])), 422, "labels: 1 values outside [0, 3)", id="label_equal_to_c"),
    pytest.param(request(tensor("logits", LOGITS), tensor("labels", [0, -1, 1])), 422, "labels: 1 values outside [0, 3)", id="label_minus_one_not_wrapped"),
    pytest.param(request(tensor("logits", LOGITS), tensor("labels", [0, 1])), 422, "labels: expected shape [3] to match logits [3, 3], got [2]", id="labels_shorter_than_n"),
    pytest.param(request(tensor("logits", LOGITS), tensor("labels", LABELS, "FP32")), 422, "labels: expected integers, got floats", id="fp32_labels"),
    pytest.param(request(tensor("logits", [[1.0], [2.0], [3.0]]), tensor("labels", LABELS)), 422, "logits: expected at least 2 classes", id="one_class"),
    pytest.param(request(tensor("logits", LOGITS), tensor("labels", LABELS), tensor("gamma", [-1.0], "FP32")), 422, "gamma: expected a finite number >= 0, got -1.0", id="negative_gamma"),
    pytest.param(request(tensor("logits", LOGITS), tensor("labels", LABELS), tensor("ignore_index", [1.5], "FP32")), 422, "ignore_index: expected an integer, got 1.5", id="float_ignore_index"),
    pytest.param(request(tensor("logits", LOGITS), tensor("labels", LABELS), tensor("alpha", [1.0, 1.0], "FP32")), 422, "alpha: expected 3 values (one per class), got shape [2]", id="alpha_wrong_length"),
    pytest.param(request(tensor("logits", LOGITS, "FP64") | {"data": [1e39] + [0.0] * 8}, tensor("labels", LABELS)), 422, "logits: 1 values are NaN or infinite (first in row 0)", id="fp64_logit_beyond_float32"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "message"), BAD_REQUESTS)
def test_bad_infer_request_is_a_clear_4xx(
    client: TestClient, body: dict[str, Any], status: int, message: str
) -> None:
    assert_error(client.post(INFER, json=body), status, message)
