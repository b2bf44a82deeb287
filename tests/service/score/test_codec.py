"""``/score`` bodies: what the codec decodes (JSON, .npz and the query) and how it answers."""

# ruff: noqa: E501 (tables of requests and their exact error messages, one per line)

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.service._inputs import batch
from tests.service._requests import (
    JSON,
    LABELS,
    LOGITS,
    MISSING,
    NPZ,
    document,
    json_body,
    npz_body,
)
from tests.service.reference import (
    MANIFEST,
    MODEL_ID,
    SCALAR_METRICS,
    assert_error,
    assert_score_response,
    eager,
)

# --- JSON ------------------------------------------------------------------------------------

# what decode_json refuses itself; values out of their domain: tests/service/core/test_validation.py
BAD_JSON = [
    pytest.param(b'{"logits": [[1, 2]], "labels": [0]', 400, "body: malformed JSON", id="truncated_json_400"),
    pytest.param(b"", 400, "body: malformed JSON", id="empty_body_400"),
    pytest.param(b'{"logits": [[NaN, 1]], "labels": [0]}', 400, "body: malformed JSON", id="nan_literal_400"),
    pytest.param(b'{"logits": [[1, 2]], "labels": [0], "gamma": 1e400}', 400, "body: malformed JSON", id="gamma_1e400_400"),
    pytest.param([LOGITS, LABELS], 422, "body: expected a JSON object", id="body_a_list"),
    pytest.param("logits", 422, "body: expected a JSON object", id="body_a_string"),
    pytest.param(document(logits=MISSING), 422, "logits: missing (required)", id="missing_logits"),
    pytest.param(document(labels=MISSING), 422, "labels: missing (required)", id="missing_labels"),
    pytest.param(document(weights=[1, 1, 1]), 422, "weights: unknown field (accepted: logits, labels,", id="unknown_field"),
    pytest.param(document(logits=[[1.0, 2.0, 3.0], [1.0, 2.0]]), 422, "logits: rows have different lengths", id="ragged_logits"),
    pytest.param(document(logits={"a": 1}), 422, "logits: expected a list, got dict", id="logits_an_object"),
    pytest.param(document(logits=[["a", 1.0, 2.0], [1.0, 2.0, 3.0]]), 422, "logits: expected numbers", id="string_logit"),
    pytest.param(document(labels=[0, None]), 422, "labels: expected numbers, found null", id="null_label"),
    pytest.param(document(labels=0), 422, "labels: expected a list, got int", id="labels_a_number"),
    pytest.param(document(alpha=["a", "b", "c"]), 422, "alpha: expected numbers", id="alpha_strings"),
    pytest.param(document(alpha="ones"), 422, 'alpha: expected a list of numbers or one number, got "ones"', id="alpha_a_string"),
    pytest.param(document(per_sample=1), 422, "per_sample: expected true or false, got 1", id="per_sample_a_number"),
    pytest.param(document(per_sample="false"), 422, 'per_sample: expected true or false, got "false"', id="per_sample_a_string"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "message"), BAD_JSON)
def test_bad_json_is_a_clear_4xx(client: TestClient, body: Any, status: int, message: str) -> None:
    if isinstance(body, bytes):
        response = client.post("/score", content=body, headers=JSON)
    else:
        response = client.post("/score", json=body)
    assert_error(response, status, message)


# --- .npz and the query --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("false", False, id="false"),
        pytest.param("0", False, id="zero"),
        pytest.param("true", True, id="true"),
        pytest.param("1", True, id="one"),
    ],
)
def test_npz_per_sample_query_parameter_is_honoured(
    client: TestClient, value: str, expected: bool
) -> None:
    logits, labels = batch(12, 3, seed=8)
    body = npz_body(logits=logits, labels=labels)
    got = client.post("/score", content=body, headers=NPZ, params={"per_sample": value}).json()
    assert_score_response(got, eager(logits, labels), per_sample=expected)


def _logits(value: float, dtype: type = np.float32) -> np.ndarray:
    logits: np.ndarray = np.zeros((3, 2), dtype)
    logits[1, 0] = value
    return logits


NPZ_LABELS = np.array([0, 1, 0])
# what decode_npz refuses (its own checks and load_npz's); values out of their domain:
# tests/service/core/test_validation.py
BAD_NPZ = [
    pytest.param(npz_body(logits=_logits(0.0)), {}, 422, "labels: missing from the .npz body", id="missing_labels"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS, weights=np.ones(2)), {}, 422, '"weights": unexpected array in the .npz body', id="unknown_array"),
    pytest.param(npz_body(logits=_logits(0.0), labels=np.array([0, None, 0], dtype=object)), {}, 422, "labels: object arrays are not accepted", id="object_array"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS)[:200], {}, 400, "body: not a valid .npz archive", id="truncated_npz"),
    pytest.param(b"PK\x03\x04 not really a zip", {}, 400, "body: not a valid .npz archive", id="malformed_npz"),
    pytest.param(b"\x93NUMPY\x01\x00", {}, 400, "body: got a single .npy array", id="single_npy"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS), {"temperature": "2"}, 422, "temperature: unknown query parameter (accepted: task, inputs, gamma, threshold, ignore_index, ranking, per_sample, monitor, source)", id="unknown_query_parameter"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS), {"gamma": "two"}, 422, 'gamma: expected a number, got "two"', id="gamma_not_a_number"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS), {"ignore_index": "1.5"}, 422, 'ignore_index: expected an integer, got "1.5"', id="float_ignore_index"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS), {"per_sample": "maybe"}, 422, 'per_sample: expected true or false, got "maybe"', id="per_sample_not_a_bool"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "query", "status", "message"), BAD_NPZ)
def test_bad_npz_is_a_clear_4xx(
    client: TestClient, body: bytes, query: dict[str, str], status: int, message: str
) -> None:
    response = client.post("/score", content=body, headers=NPZ, params=query)
    assert_error(response, status, message)


# --- the response ----------------------------------------------------------------------------


def test_response_names_the_model_and_the_batch(client: TestClient) -> None:
    logits, labels = batch(9, 3, seed=2, ignore=2)
    got = client.post("/score", json=json_body(logits, labels)).json()
    assert MANIFEST["sha256"] == MODEL_ID
    assert got["model"] == {
        "name": "focal-eval",
        "id": MODEL_ID,
        "kind": "evaluation",
        "format": "onnx",
    }
    assert (got["n"], got["num_classes"], got["shape"], got["valid"]) == (9, 3, [9], 7)


def test_all_ignored_batch_gives_null_scalar_metrics(client: TestClient) -> None:
    logits, labels = batch(6, 3, seed=4, ignore=6)
    got = client.post("/score", json=json_body(logits, labels)).json()
    assert got["valid"] == 0
    assert all(got["metrics"][name] is None for name in SCALAR_METRICS)
    assert got["statistics"]["confusion_matrix"] == [[0] * 3] * 3
    assert got["per_sample"]["focal_loss"] == [0.0] * 6
    assert_score_response(got, eager(logits, labels))
