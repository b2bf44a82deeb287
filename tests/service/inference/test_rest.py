"""Open Inference Protocol routes through TestClient, with tritonclient's own codec.

Request bodies come from ``InferenceServerClient.generate_request_body`` and responses are read
with ``InferResult.from_response_body``, so these are the bytes tritonclient sends and reads;
every output is checked against eager ``focal.update`` / ``focal.compute``.
"""

# ruff: noqa: E501 (tables of requests and their exact error messages, one per line)

from __future__ import annotations

import importlib.metadata
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from fastapi.testclient import TestClient
from tritonclient.utils import np_to_triton_dtype

from tests.service.reference import (
    DEFAULT_IGNORE_INDEX,
    MANIFEST,
    METRICS,
    NUM_BINS,
    PER_SAMPLE,
    STATISTICS,
    assert_error,
    batch,
    eager,
)

HEADER = "Inference-Header-Content-Length"
INFER = "/v2/models/focal-eval/infer"
OUTPUTS = (*PER_SAMPLE, *STATISTICS, *METRICS)
DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64"}


def infer_body(
    arrays: dict[str, np.ndarray], binary: bool = True, outputs: tuple[str, ...] | None = OUTPUTS
) -> tuple[bytes, dict[str, str]]:
    """A request built by tritonclient: inputs as binary or JSON, outputs asked for alike."""
    inputs = []
    for name, array in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        inputs.append(tensor.set_data_from_numpy(array, binary_data=binary))
    requested = None
    if outputs is not None:
        requested = [triton.InferRequestedOutput(name, binary_data=binary) for name in outputs]
    body, header_length = triton.InferenceServerClient.generate_request_body(
        inputs, outputs=requested
    )
    return body, {} if header_length is None else {HEADER: str(header_length)}


def parse(response: Any) -> Any:
    """The response read by tritonclient."""
    assert response.status_code == 200, response.text
    length = response.headers.get(HEADER)
    return triton.InferResult.from_response_body(
        response.content, header_length=None if length is None else int(length)
    )


def assert_outputs_equal_eager(result: Any, want: dict[str, np.ndarray]) -> None:
    expected_types = {e["name"]: DATATYPES[e["dtype"]] for e in MANIFEST["outputs"]}
    for name in OUTPUTS:
        got = result.as_numpy(name)
        assert got is not None, f"output {name} missing"
        assert result.get_output(name)["datatype"] == expected_types[name], name
        assert got.shape == want[name].shape, name
        if want[name].dtype.kind in "iu":
            np.testing.assert_array_equal(got, want[name], err_msg=name)
        else:
            np.testing.assert_allclose(got, want[name], rtol=1e-4, atol=1e-5, err_msg=name)


# --- metadata ---------------------------------------------------------------------------------


def test_server_metadata_names_the_binary_tensor_extension(client: TestClient) -> None:
    response = client.get("/v2")
    assert response.status_code == 200
    assert response.json() == {
        "name": "focal-eval",
        "version": importlib.metadata.version("focal-eval"),
        "extensions": ["binary_tensor_data"],
    }


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
    assert set(outputs) == set(OUTPUTS)
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
        pytest.param("GET", "/v2/models/resnet", "model 'resnet' not found", id="metadata_unknown_model"),
        pytest.param("GET", "/v2/models/resnet/ready", "model 'resnet' not found", id="ready_unknown_model"),
        pytest.param("POST", "/v2/models/resnet/infer", "model 'resnet' not found", id="infer_unknown_model"),
        pytest.param("GET", "/v2/models/focal-eval/versions/2", "model 'focal-eval' has no version '2'", id="metadata_unknown_version"),
        pytest.param("GET", "/v2/models/focal-eval/versions/2/ready", "model 'focal-eval' has no version '2'", id="ready_unknown_version"),
        pytest.param("POST", "/v2/models/focal-eval/versions/2/infer", "model 'focal-eval' has no version '2'", id="infer_unknown_version"),
    ],
)  # fmt: skip
def test_unknown_model_or_version_is_404(
    client: TestClient, method: str, path: str, message: str
) -> None:
    response = client.request(method, path, json={"inputs": []})
    assert_error(response, 404, message)


# --- inference --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "binary", [pytest.param(False, id="json"), pytest.param(True, id="binary")]
)
def test_infer_outputs_equal_eager_focal(client: TestClient, binary: bool) -> None:
    logits, labels = batch(40, 4, seed=21, ignore=3)
    body, headers = infer_body({"logits": logits, "labels": labels}, binary=binary)
    response = client.post(INFER, content=body, headers=headers)
    expected_type = "application/octet-stream" if binary else "application/json"
    assert response.headers["content-type"] == expected_type
    assert_outputs_equal_eager(parse(response), eager(logits, labels))


def test_infer_with_the_version_in_the_path(client: TestClient) -> None:
    logits, labels = batch(8, 3, seed=22)
    body, headers = infer_body({"logits": logits, "labels": labels})
    response = client.post("/v2/models/focal-eval/versions/1/infer", content=body, headers=headers)
    assert_outputs_equal_eager(parse(response), eager(logits, labels))


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


# --- bad requests -----------------------------------------------------------------------------

LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [0.0, 1.0, 0.0]], np.float32)
LABELS = np.array([0, 2, 1])


def tensor(name: str, array: Any, datatype: str | None = None) -> dict[str, Any]:
    array = np.asarray(array)
    return {
        "name": name,
        "shape": list(array.shape),
        "datatype": datatype or np_to_triton_dtype(array.dtype),
        "data": array.reshape(-1).tolist(),
    }


def request(*inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"inputs": list(inputs), **extra}


BAD_JSON_REQUESTS = [
    pytest.param(request(tensor("logits", LOGITS)), 400, "inputs: missing required input 'labels'", id="missing_labels"),
    pytest.param(request(tensor("labels", LABELS)), 400, "inputs: missing required input 'logits'", id="missing_logits"),
    pytest.param(request(tensor("logits", LOGITS), tensor("labels", LABELS), tensor("weights", [1.0])), 400, "inputs: unknown input 'weights'", id="unknown_input"),
    pytest.param(request(tensor("logits", LOGITS), tensor("labels", LABELS), outputs=[{"name": "auc"}]), 400, "outputs[0]: no output named 'auc'", id="unknown_output"),
    pytest.param(request({**tensor("logits", LOGITS), "shape": [3, 4]}, tensor("labels", LABELS)), 400, "inputs[0] (logits): data has 9 elements but shape [3, 4] needs 12", id="shape_size_mismatch"),
    pytest.param(request(tensor("logits", LOGITS), tensor("labels", [0.5, 1.0, 2.0], "INT64")), 400, "inputs[1] (labels): data must hold integers for INT64, got floats", id="float_data_for_int64"),
    pytest.param(request(tensor("logits", LOGITS, "FP8"), tensor("labels", LABELS)), 400, "inputs[0].datatype: expected one of", id="unknown_datatype"),
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


@pytest.mark.parametrize(("body", "status", "message"), BAD_JSON_REQUESTS)
def test_bad_infer_request_is_a_clear_4xx(
    client: TestClient, body: dict[str, Any], status: int, message: str
) -> None:
    assert_error(client.post(INFER, json=body), status, message)


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post(
        INFER, content=b'{"inputs": [', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "body: malformed JSON")


def test_header_length_larger_than_the_body_is_400(client: TestClient) -> None:
    body, _ = infer_body({"logits": LOGITS, "labels": LABELS})
    response = client.post(INFER, content=body, headers={HEADER: str(len(body) + 1)})
    assert_error(
        response, 400, f"{HEADER}: {len(body) + 1} exceeds the body size ({len(body)} bytes)"
    )


def test_header_length_that_is_not_a_number_is_400(client: TestClient) -> None:
    body, _ = infer_body({"logits": LOGITS, "labels": LABELS})
    response = client.post(INFER, content=body, headers={HEADER: "twelve"})
    assert_error(response, 400, f"{HEADER}: expected a non-negative decimal integer")


def _binary_request(logits_size: int, blob: bytes) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps(
        request(
            {"name": "logits", "shape": [3, 3], "datatype": "FP32", "parameters": {"binary_data_size": logits_size}},
            tensor("labels", LABELS),
        )
    )  # fmt: skip
    return header + blob, {HEADER: str(len(header))}


def test_binary_size_that_does_not_match_the_shape_is_400(client: TestClient) -> None:
    body, headers = _binary_request(32, LOGITS.tobytes()[:32])
    response = client.post(INFER, content=body, headers=headers)
    assert_error(
        response,
        400,
        "inputs[0] (logits): binary_data_size 32 does not match shape [3, 3] of FP32 (36 bytes expected)",
    )


def test_binary_data_shorter_than_declared_is_400(client: TestClient) -> None:
    body, headers = _binary_request(36, LOGITS.tobytes()[:30])
    response = client.post(INFER, content=body, headers=headers)
    assert_error(response, 400, "inputs[0] (logits): binary_data_size 36 overruns the body")


def test_binary_nan_logit_is_422(client: TestClient) -> None:
    logits = LOGITS.copy()
    logits[2, 1] = np.nan
    body, headers = infer_body({"logits": logits, "labels": LABELS})
    response = client.post(INFER, content=body, headers=headers)
    assert_error(response, 422, "logits: 1 values are NaN or infinite (first in row 2)")


def test_all_ignored_batch_gives_nan_metrics_in_binary(client: TestClient) -> None:
    labels = np.full(3, DEFAULT_IGNORE_INDEX)
    body, headers = infer_body({"logits": LOGITS, "labels": labels})
    result = parse(client.post(INFER, content=body, headers=headers))
    assert np.isnan(result.as_numpy("accuracy"))
    assert int(result.as_numpy("confusion_matrix").sum()) == 0
    assert_outputs_equal_eager(result, eager(LOGITS, labels))  # NaN where eager has NaN
