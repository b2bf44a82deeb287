"""Open Inference Protocol REST routes through TestClient, with tritonclient's own codec.

Request bodies come from ``InferenceServerClient.generate_request_body`` and responses are read
with ``InferResult.from_response_body``, so these are the bytes tritonclient sends and reads;
every output is checked against eager ``focal_eval.focal.update`` / ``focal_eval.focal.compute``.
"""

# ruff: noqa: E501 (tables of requests and their exact error messages, one per line)

from __future__ import annotations

import gzip
import importlib.metadata
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from tests.service._inputs import batch
from tests.service._requests import npz_body
from tests.service.conftest import TEST_SETTINGS
from tests.service.inference._triton import (
    HEADER,
    INFER,
    LABELS,
    LOGITS,
    assert_outputs_equal_eager,
    infer_body,
    parse,
    request,
    tensor,
)
from tests.service.reference import DEFAULT_IGNORE_INDEX, assert_error, eager


def test_server_metadata_names_the_binary_tensor_extension(client: TestClient) -> None:
    response = client.get("/v2")
    assert response.status_code == 200
    assert response.json() == {
        "name": "focal-eval",
        "version": importlib.metadata.version("focal-eval"),
        "extensions": ["binary_tensor_data"],
    }


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


def test_all_ignored_batch_gives_nan_metrics_in_binary(client: TestClient) -> None:
    labels = np.full(3, DEFAULT_IGNORE_INDEX)
    body, headers = infer_body({"logits": LOGITS, "labels": labels})
    result = parse(client.post(INFER, content=body, headers=headers))
    assert np.isnan(result.as_numpy("accuracy"))
    assert int(result.as_numpy("confusion_matrix").sum()) == 0
    assert_outputs_equal_eager(result, eager(LOGITS, labels))  # NaN where eager has NaN


# --- bad requests: the body -------------------------------------------------------------------

# what decoding the body refuses; the dataplane's refusals: test_dataplane.py
BAD_BODIES = [
    pytest.param(request({**tensor("logits", LOGITS), "shape": [3, 4]}, tensor("labels", LABELS)), "inputs[0] (logits): data has 9 elements but shape [3, 4] needs 12", id="shape_size_mismatch"),
    pytest.param(request(tensor("logits", LOGITS), tensor("labels", [0.5, 1.0, 2.0], "INT64")), "inputs[1] (labels): data must hold integers for INT64, got floats", id="float_data_for_int64"),
    pytest.param(request(tensor("logits", LOGITS, "FP8"), tensor("labels", LABELS)), "inputs[0].datatype: expected one of", id="unknown_datatype"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
def test_bad_infer_body_is_400(client: TestClient, body: dict[str, Any], message: str) -> None:
    assert_error(client.post(INFER, json=body), 400, message)


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


def test_header_length_of_more_digits_than_64_bits_is_400(client: TestClient) -> None:
    body, _ = infer_body({"logits": LOGITS, "labels": LABELS})
    response = client.post(INFER, content=body, headers={HEADER: "9" * 21})
    assert_error(response, 400, f"{HEADER}: {'9' * 21} exceeds the body size ({len(body)} bytes)")


def test_header_length_that_is_not_a_number_is_400(client: TestClient) -> None:
    body, _ = infer_body({"logits": LOGITS, "labels": LABELS})
    response = client.post(INFER, content=body, headers={HEADER: "twelve"})
    assert_error(response, 400, f'{HEADER}: expected a non-negative integer, got "twelve"')


GZIP = {"content-encoding": "gzip"}
BODY_LIMIT = TEST_SETTINGS["max_body_bytes"]


@pytest.mark.parametrize(
    "binary", [pytest.param(False, id="json"), pytest.param(True, id="binary")]
)
def test_a_compressed_request_led_by_json_whitespace_is_scored(
    client: TestClient, binary: bool
) -> None:
    logits, labels = batch(40, 4, seed=22, ignore=3)
    body, headers = infer_body({"logits": logits, "labels": labels}, binary=binary)
    lead = b" \r\n\t"  # before the header's object: part of the JSON, counted in its length
    if binary:
        headers = {HEADER: str(len(lead) + int(headers[HEADER]))}
    response = client.post(INFER, content=gzip.compress(lead + body), headers={**headers, **GZIP})
    assert_outputs_equal_eager(parse(response), eager(logits, labels))


@pytest.mark.parametrize(
    ("decoded", "headers"),
    [
        pytest.param(bytes(3 * BODY_LIMIT), {}, id="zeros-past-the-body-limit"),
        pytest.param(bytes(3 * BODY_LIMIT), {HEADER: "64"}, id="zeros-past-the-body-limit-binary"),
        pytest.param(npz_body(logits=np.asarray(LOGITS), labels=np.asarray(LABELS)), {}, id="an-npz-archive"),
        pytest.param(b'[{"inputs": []}]', {}, id="a-json-array"),
        pytest.param(b" " * 8 + bytes(3 * BODY_LIMIT), {}, id="zeros-after-eight-spaces"),
    ],
)  # fmt: skip
def test_a_compressed_body_that_is_no_request_is_400_at_its_first_bytes(
    client: TestClient, decoded: bytes, headers: dict[str, str]
) -> None:
    response = client.post(INFER, content=gzip.compress(decoded), headers={**headers, **GZIP})
    assert_error(
        response, 400, "body: not a v2 inference request (it does not begin with a JSON object)"
    )


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
