"""``POST /score`` through TestClient: every number against eager focal, every bad input a 4xx."""

# ruff: noqa: E501 (tables of requests and their exact error messages, one per line)

from __future__ import annotations

import gzip
import io
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

import focal
from service.app import create_app
from service.core.settings import Settings
from tests.service.reference import (
    DEFAULT_GAMMA,
    DEFAULT_IGNORE_INDEX,
    MANIFEST,
    MODEL_ID,
    SCALAR_METRICS,
    assert_close,
    assert_error,
    assert_score_response,
    batch,
    eager,
    flatten,
)

LOGITS = [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]
LABELS = [0, 2]
NPZ = {"content-type": "application/x-npz"}
JSON = {"content-type": "application/json"}
MISSING = object()


@contextmanager
def scoring_client(**overrides: Any) -> Iterator[TestClient]:
    """A client of an app built from ``Settings(**overrides)``, lifespan run."""
    settings = Settings(threads=1, max_body_bytes=4 * 2**20, **overrides)
    with TestClient(create_app(settings)) as client:
        yield client


def document(**changes: Any) -> dict[str, Any]:
    """A valid 2 x 3 request with ``changes`` applied (``MISSING`` drops a field)."""
    body: dict[str, Any] = {"logits": LOGITS, "labels": LABELS}
    body.update(changes)
    return {name: value for name, value in body.items() if value is not MISSING}


def npz_body(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    if compressed:
        np.savez_compressed(buffer, allow_pickle=True, **arrays)
    else:
        np.savez(buffer, allow_pickle=True, **arrays)
    return buffer.getvalue()


def json_body(logits: np.ndarray, labels: np.ndarray, **options: Any) -> dict[str, Any]:
    return {"logits": logits.tolist(), "labels": labels.tolist(), **options}


# --- JSON: the numbers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "ignored"),
    [
        pytest.param({}, 5, id="server_defaults_gamma_2_no_alpha"),
        pytest.param({"gamma": 0.0}, 0, id="gamma_zero"),
        pytest.param({"gamma": 3.5, "alpha": [0.25, 1.0, 2.0, 0.5]}, 3, id="gamma_and_alpha"),
        pytest.param({"ignore_index": -1}, 7, id="ignore_index_minus_one_skips_rows"),
        pytest.param({"ignore_index": 2}, 0, id="ignore_index_equal_to_a_class_drops_it"),
        pytest.param({"gamma": 1.0, "per_sample": False}, 0, id="per_sample_false"),
    ],
)
def test_json_response_equals_eager_focal(
    client: TestClient, options: dict[str, Any], ignored: int
) -> None:
    gamma = options.get("gamma", DEFAULT_GAMMA)
    ignore_index = options.get("ignore_index", DEFAULT_IGNORE_INDEX)
    logits, labels = batch(48, 4, seed=1, ignore=ignored, ignore_index=ignore_index)
    response = client.post("/score", json=json_body(logits, labels, **options))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    got = response.json()
    want = eager(logits, labels, options.get("alpha"), gamma, ignore_index)
    assert_score_response(got, want, per_sample=options.get("per_sample", True))
    assert got["valid"] == int(np.count_nonzero(labels != ignore_index))
    assert got["parameters"] == {
        "gamma": gamma,
        "ignore_index": ignore_index,
        "alpha": options.get("alpha"),
    }


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


def test_label_minus_one_is_422_not_wrapped_to_last_class(client: TestClient) -> None:
    response = client.post("/score", json=document(labels=[0, -1]))
    assert_error(response, 422, "labels: 1 values outside [0, 3)", "first -1 at index 1")
    # declared as ignore_index, the same row is skipped: it counts for no class, not for C - 1
    logits, labels = np.asarray(LOGITS, np.float32), np.array([0, -1])
    got = client.post("/score", json=document(labels=[0, -1], ignore_index=-1)).json()
    assert got["valid"] == 1
    assert got["per_class"]["support"] == [1, 0, 0]
    assert_score_response(got, eager(logits, labels, ignore_index=-1))


def test_segmentation_logits_are_flattened_with_the_class_dimension_last(
    client: TestClient,
) -> None:
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((2, 4, 3, 5)) * 2).astype(np.float32)
    labels = rng.integers(0, 4, size=(2, 3, 5))
    labels[0, 1, :2] = DEFAULT_IGNORE_INDEX
    got = client.post("/score", json=json_body(logits, labels, gamma=1.5)).json()
    assert (got["n"], got["shape"], got["valid"]) == (30, [2, 3, 5], 28)
    assert_score_response(got, eager(*flatten(logits, labels), gamma=1.5))
    # independently of flatten(): the loss of the (N, C, d1, d2) tensor in the labels' order
    direct = focal.softmax_focal_loss(
        torch.from_numpy(logits), torch.from_numpy(labels), gamma=1.5, reduction="none"
    )
    assert_close(got["per_sample"]["focal_loss"], direct.numpy().reshape(-1), "focal_loss")


def test_all_ignored_batch_gives_null_scalar_metrics(client: TestClient) -> None:
    logits, labels = batch(6, 3, seed=4, ignore=6)
    got = client.post("/score", json=json_body(logits, labels)).json()
    assert got["valid"] == 0
    assert all(got["metrics"][name] is None for name in SCALAR_METRICS)
    assert got["confusion_matrix"] == [[0] * 3] * 3
    assert got["per_sample"]["focal_loss"] == [0.0] * 6
    assert_score_response(got, eager(logits, labels))


def test_loss_overflowing_float32_is_422_not_a_null_that_reads_undefined(
    client: TestClient,
) -> None:
    # finite logits whose spread overflows float32: the cross entropy is infinite, and JSON
    # would carry it as null, which the schema documents as "undefined"
    logits = [[3e38, -3e38, 0.0], LOGITS[1]]
    response = client.post("/score", json=document(logits=logits, labels=[1, 2]))
    assert_error(response, 422, "logits: the cross entropy of row 0 overflows float32")


def test_settings_defaults_apply_when_the_request_omits_them() -> None:
    alpha, gamma, ignore_index = [0.25, 1.0, 2.0], 0.5, -1
    logits, labels = batch(40, 3, seed=5, ignore=4, ignore_index=ignore_index)
    with scoring_client(gamma=gamma, alpha=alpha, ignore_index=ignore_index) as client:
        got = client.post("/score", json=json_body(logits, labels)).json()
    assert_score_response(got, eager(logits, labels, alpha, gamma, ignore_index))
    assert got["valid"] == 36
    assert got["parameters"] == {"gamma": gamma, "ignore_index": ignore_index, "alpha": alpha}


def test_request_values_override_settings_defaults() -> None:
    logits, labels = batch(40, 3, seed=6, ignore=3)
    options: dict[str, Any] = {
        "gamma": 3.0,
        "alpha": [1.0, 0.5, 0.0],
        "ignore_index": DEFAULT_IGNORE_INDEX,
    }
    with scoring_client(gamma=0.5, alpha=[0.25, 1.0, 2.0], ignore_index=-1) as client:
        got = client.post("/score", json=json_body(logits, labels, **options)).json()
    assert_score_response(got, eager(logits, labels, **options))
    assert got["parameters"] == options


def test_server_default_alpha_of_the_wrong_length_is_422_naming_focal_alpha() -> None:
    with scoring_client(alpha=[1.0, 2.0]) as client:
        response = client.post("/score", json=document())
        assert_error(
            response,
            422,
            "alpha: the server's default alpha (FOCAL_ALPHA) has 2 values",
            "the batch has 3 classes",
        )
        assert client.post("/score", json=document(alpha=[1.0, 1.0, 1.0])).status_code == 200


# --- JSON: bad input -----------------------------------------------------------------------

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
    pytest.param(document(logits=[1.0, 2.0, 3.0], labels=[0]), 422, "logits: expected shape (N, C) or (N, C, d1, ...), got [3]", id="one_dimensional_logits"),
    pytest.param(document(logits={"a": 1}), 422, "logits: expected a list, got dict", id="logits_an_object"),
    pytest.param(document(logits=[["a", 1.0, 2.0], [1.0, 2.0, 3.0]]), 422, "logits: expected numbers", id="string_logit"),
    pytest.param(document(logits=[[None, 1.0, 2.0], [1.0, 2.0, 3.0]]), 422, "logits: 1 values are NaN or infinite (first in row 0)", id="null_logit_is_non_finite"),
    pytest.param(document(logits=[[1e39, 1.0, 2.0], [1.0, 2.0, 3.0]]), 422, "logits: 1 values are NaN or infinite (first in row 0)", id="logit_1e39_overflows_float32"),
    pytest.param(document(logits=[], labels=[]), 422, "logits: expected at least one row, got an empty batch", id="empty_batch_n_0"),
    pytest.param(document(logits=[[1.0], [2.0]]), 422, "logits: expected at least 2 classes (dimension 1), got 1", id="one_class"),
    pytest.param(document(logits=[[], []]), 422, "logits: expected at least 2 classes (dimension 1), got 0", id="zero_classes"),
    pytest.param(document(labels=[0, 1, 2]), 422, "labels: expected shape [2] to match logits [2, 3], got [3]", id="labels_longer_than_n"),
    pytest.param(document(labels=[0]), 422, "labels: expected shape [2] to match logits [2, 3], got [1]", id="labels_shorter_than_n"),
    pytest.param(document(labels=[0, 1.5]), 422, "labels: expected integers, got floats", id="label_1_5"),
    pytest.param(document(labels=[True, False]), 422, "labels: expected integers, got bool", id="bool_labels"),
    pytest.param(document(labels=[0, None]), 422, "labels: expected numbers, found null", id="null_label"),
    pytest.param(document(labels=["0", "1"]), 422, "labels: expected integers", id="string_labels"),
    pytest.param(document(labels=0), 422, "labels: expected a list, got int", id="labels_a_number"),
    pytest.param(document(labels=[0, 3]), 422, "labels: 1 values outside [0, 3) that are not ignore_index (-100); first 3 at index 1", id="label_equal_to_c"),
    pytest.param(document(labels=[-1, 0]), 422, "labels: 1 values outside [0, 3)", id="label_minus_one"),
    pytest.param(document(labels=[0, 2**63]), 422, "labels: values beyond the int64 range", id="label_beyond_int64"),
    pytest.param(document(labels=[0, 2**70]), 422, "labels: values beyond the int64 range", id="label_beyond_64_bits"),
    pytest.param(document(gamma=-1), 422, "gamma: expected a finite number >= 0, got -1", id="negative_gamma"),
    pytest.param(document(gamma="2"), 422, "gamma: expected a number, got '2'", id="gamma_a_string"),
    pytest.param(document(gamma=True), 422, "gamma: expected a number, got True", id="gamma_a_bool"),
    pytest.param(document(gamma=[2.0]), 422, "gamma: expected a number, got [2.0]", id="gamma_a_list"),
    pytest.param(document(gamma=1e39), 422, "gamma: 1e+39 is beyond the float32 range", id="gamma_beyond_float32"),
    pytest.param(document(alpha=[1.0, 1.0]), 422, "alpha: expected 3 values (one per class), got shape [2]", id="alpha_too_short"),
    pytest.param(document(alpha=[[1.0, 1.0, 1.0]]), 422, "alpha: expected 3 values (one per class), got shape [1, 3]", id="alpha_nested"),
    pytest.param(document(alpha=[1.0, -0.5, 1.0]), 422, "alpha: expected finite values >= 0", id="negative_alpha"),
    pytest.param(document(alpha=[1.0, 1e39, 1.0]), 422, "alpha: expected finite values >= 0", id="alpha_beyond_float32"),
    pytest.param(document(alpha=["a", "b", "c"]), 422, "alpha: expected numbers", id="alpha_strings"),
    pytest.param(document(alpha="ones"), 422, "alpha: expected a list, got str", id="alpha_a_string"),
    pytest.param(document(ignore_index=1.5), 422, "ignore_index: expected an integer, got 1.5", id="ignore_index_float"),
    pytest.param(document(ignore_index=-100.0), 422, "ignore_index: expected an integer, got -100.0", id="ignore_index_integral_float"),
    pytest.param(document(ignore_index=True), 422, "ignore_index: expected an integer, got True", id="ignore_index_a_bool"),
    pytest.param(document(ignore_index="-100"), 422, "ignore_index: expected an integer, got '-100'", id="ignore_index_a_string"),
    pytest.param(document(ignore_index=2**63), 422, "ignore_index: 9223372036854775808 is outside the int64 range", id="ignore_index_beyond_int64"),
    pytest.param(document(ignore_index=2**70), 422, "ignore_index: 1180591620717411303424 is outside the int64 range", id="ignore_index_beyond_64_bits"),
    pytest.param(document(per_sample=1), 422, "per_sample: expected true or false, got 1", id="per_sample_a_number"),
    pytest.param(document(per_sample="false"), 422, "per_sample: expected true or false, got 'false'", id="per_sample_a_string"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "message"), BAD_JSON)
def test_bad_json_is_a_clear_4xx(client: TestClient, body: Any, status: int, message: str) -> None:
    if isinstance(body, bytes):
        response = client.post("/score", content=body, headers=JSON)
    else:
        response = client.post("/score", json=body)
    assert_error(response, status, message)


def test_query_parameters_with_a_json_body_are_422(client: TestClient) -> None:
    response = client.post("/score", json=document(), params={"gamma": "1"})
    assert_error(response, 422, "gamma: query parameters are for .npz bodies")


# --- .npz ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "compressed", [pytest.param(False, id="savez"), pytest.param(True, id="savez_compressed")]
)
def test_npz_response_equals_eager_focal(client: TestClient, compressed: bool) -> None:
    logits, labels = batch(64, 5, seed=7, ignore=6, ignore_index=-1)
    alpha = np.array([0.5, 1.0, 2.0, 1.0, 0.25], np.float32)
    body = npz_body(compressed, logits=logits, labels=labels, alpha=alpha)
    query = {"gamma": "1.25", "ignore_index": "-1"}
    got = client.post("/score", content=body, headers=NPZ, params=query).json()
    assert_score_response(got, eager(logits, labels, alpha, 1.25, -1))
    assert got["parameters"] == {"gamma": 1.25, "ignore_index": -1, "alpha": alpha.tolist()}


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


@pytest.mark.parametrize(
    "dtype", [pytest.param(np.float16, id="float16"), pytest.param(np.float64, id="float64")]
)
def test_npz_float16_and_float64_logits_are_scored_in_float32(
    client: TestClient, dtype: type
) -> None:
    _, labels = batch(32, 4, seed=9)
    sent: np.ndarray = (np.random.default_rng(9).standard_normal((32, 4)) * 3).astype(dtype)
    got = client.post("/score", content=npz_body(logits=sent, labels=labels), headers=NPZ).json()
    assert_score_response(got, eager(sent.astype(np.float32), labels))


@pytest.mark.parametrize(
    "dtype", [pytest.param(np.int32, id="int32"), pytest.param(np.uint8, id="uint8")]
)
def test_npz_integer_label_dtypes_are_accepted(client: TestClient, dtype: type) -> None:
    logits, labels = batch(32, 4, seed=10)
    body = npz_body(logits=logits, labels=labels.astype(dtype))
    got = client.post("/score", content=body, headers=NPZ).json()
    assert_score_response(got, eager(logits, labels))


def test_npz_as_octet_stream_is_accepted(client: TestClient) -> None:
    logits, labels = batch(8, 3, seed=11)
    body = npz_body(logits=logits, labels=labels)
    response = client.post(
        "/score", content=body, headers={"content-type": "application/octet-stream"}
    )
    assert_score_response(response.json(), eager(logits, labels))


def _logits(value: float, dtype: type = np.float32) -> np.ndarray:
    logits: np.ndarray = np.zeros((3, 2), dtype)
    logits[1, 0] = value
    return logits


NPZ_LABELS = np.array([0, 1, 0])
BAD_NPZ = [
    pytest.param(npz_body(logits=_logits(1e39, np.float64), labels=NPZ_LABELS), {}, 422, "logits: 1 values are NaN or infinite (first in row 1); a float64 value beyond the float32 range", id="float64_beyond_float32"),
    pytest.param(npz_body(logits=_logits(np.nan), labels=NPZ_LABELS), {}, 422, "logits: 1 values are NaN or infinite (first in row 1)", id="nan_logit"),
    pytest.param(npz_body(logits=_logits(np.inf), labels=NPZ_LABELS), {}, 422, "logits: 1 values are NaN or infinite (first in row 1)", id="inf_logit"),
    pytest.param(npz_body(logits=_logits(-np.inf), labels=NPZ_LABELS), {}, 422, "logits: 1 values are NaN or infinite (first in row 1)", id="minus_inf_logit"),
    pytest.param(npz_body(logits=_logits(0.0)[:0], labels=NPZ_LABELS[:0]), {}, 422, "logits: expected at least one row, got an empty batch", id="empty_batch"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS.astype(np.float32)), {}, 422, "labels: expected integers, got floats", id="float_labels"),
    pytest.param(npz_body(logits=_logits(0.0), labels=np.array([0, 2, 0])), {}, 422, "labels: 1 values outside [0, 2)", id="label_out_of_range"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS, alpha=np.ones(3)), {}, 422, "alpha: expected 2 values (one per class), got shape [3]", id="alpha_wrong_length"),
    pytest.param(npz_body(logits=_logits(0.0)), {}, 422, "labels: missing from the .npz body", id="missing_labels"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS, weights=np.ones(2)), {}, 422, "'weights': unexpected array in the .npz body", id="unknown_array"),
    pytest.param(npz_body(logits=_logits(0.0), labels=np.array([0, None, 0], dtype=object)), {}, 422, "labels: object arrays are not accepted", id="object_array"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS)[:200], {}, 400, "body: not a valid .npz archive", id="truncated_npz"),
    pytest.param(b"PK\x03\x04 not really a zip", {}, 400, "body: not a valid .npz archive", id="malformed_npz"),
    pytest.param(b"\x93NUMPY\x01\x00", {}, 400, "body: got a single .npy array", id="single_npy"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS), {"temperature": "2"}, 422, "temperature: unknown query parameter (accepted: gamma, ignore_index, per_sample, monitor, source)", id="unknown_query_parameter"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS), {"gamma": "two"}, 422, "gamma: expected a number, got 'two'", id="gamma_not_a_number"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS), {"gamma": "-1"}, 422, "gamma: expected a finite number >= 0, got -1.0", id="negative_gamma"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS), {"gamma": "nan"}, 422, "gamma: expected a finite number >= 0, got nan", id="nan_gamma"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS), {"ignore_index": "1.5"}, 422, "ignore_index: expected an integer, got '1.5'", id="float_ignore_index"),
    pytest.param(npz_body(logits=_logits(0.0), labels=NPZ_LABELS), {"per_sample": "maybe"}, 422, "per_sample: expected true or false, got 'maybe'", id="per_sample_not_a_bool"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "query", "status", "message"), BAD_NPZ)
def test_bad_npz_is_a_clear_4xx(
    client: TestClient, body: bytes, query: dict[str, str], status: int, message: str
) -> None:
    response = client.post("/score", content=body, headers=NPZ, params=query)
    assert_error(response, status, message)


# --- Content-Type, Content-Encoding, size limits -------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param({"content-type": "text/plain"}, "Content-Type: 'text/plain' is not supported", id="text_plain"),
        pytest.param({"content-type": "application/xml"}, "Content-Type: 'application/xml' is not supported", id="xml"),
        pytest.param({}, "Content-Type: 'missing' is not supported", id="missing"),
    ],
)  # fmt: skip
def test_unsupported_content_type_is_415(
    client: TestClient, headers: dict[str, str], message: str
) -> None:
    response = client.post(
        "/score", content=b'{"logits": [[1, 2]], "labels": [0]}', headers=headers
    )
    assert_error(response, 415, message, "use application/json or application/x-npz")


def test_json_with_a_charset_parameter_is_accepted(client: TestClient) -> None:
    logits, labels = batch(4, 3, seed=12)
    response = client.post(
        "/score",
        content=orjson.dumps(json_body(logits, labels)),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert_score_response(response.json(), eager(logits, labels))


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
}


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("kind", ["json", "npz"])
def test_compressed_bodies_are_decoded(client: TestClient, encoding: str, kind: str) -> None:
    logits, labels = batch(50, 4, seed=13, ignore=2)
    if kind == "json":
        raw, content_type = orjson.dumps(json_body(logits, labels)), "application/json"
    else:
        raw, content_type = npz_body(logits=logits, labels=labels), "application/x-npz"
    response = client.post(
        "/score",
        content=ENCODERS[encoding](raw),
        headers={"content-type": content_type, "content-encoding": encoding},
    )
    assert_score_response(response.json(), eager(logits, labels))


def test_body_over_the_limit_by_content_length_is_413(client: TestClient) -> None:
    limit = 4 * 2**20
    response = client.post("/score", content=b" " * (limit + 1), headers=JSON)
    assert_error(response, 413, f"body: {limit + 1} bytes exceeds the limit of {limit} bytes")


def test_streamed_body_over_the_limit_without_content_length_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b" " * 2**20

    response = client.post("/score", content=chunks(), headers=JSON)
    assert response.request.headers.get("content-length") is None
    assert_error(response, 413, f"body: exceeds the limit of {4 * 2**20} bytes")


def test_gzip_body_that_inflates_past_the_limit_is_413(client: TestClient) -> None:
    bomb = gzip.compress(b"0" * (4 * 2**20 + 1))
    assert len(bomb) < 2**16
    response = client.post("/score", content=bomb, headers={**JSON, "content-encoding": "gzip"})
    assert_error(response, 413, f"body: decoded size exceeds the limit of {4 * 2**20} bytes")


@pytest.mark.parametrize(
    ("body", "encoding", "status", "message"),
    [
        pytest.param(b"not gzip at all", "gzip", 400, "body: invalid gzip data", id="corrupt_gzip"),
        pytest.param(gzip.compress(orjson.dumps(document()))[:-12], "gzip", 400, "body: invalid gzip data", id="truncated_gzip"),
        pytest.param(b"\x78\x9c garbage", "deflate", 400, "body: invalid deflate data", id="corrupt_deflate"),
        pytest.param(orjson.dumps(document()), "br", 415, "Content-Encoding: 'br' is not supported", id="unknown_encoding"),
    ],
)  # fmt: skip
def test_bad_content_encoding_is_a_clear_4xx(
    client: TestClient, body: bytes, encoding: str, status: int, message: str
) -> None:
    response = client.post("/score", content=body, headers={**JSON, "content-encoding": encoding})
    assert_error(response, status, message)


# --- saturation and unexpected errors -------------------------------------------------------


@pytest.mark.timeout(30)
def test_saturated_server_answers_503_with_retry_after_at_once() -> None:
    with scoring_client(max_in_flight=1) as client:
        app: FastAPI = client.app  # type: ignore[assignment]
        assert client.portal is not None
        with client.portal.wrap_async_context_manager(app.state.runtime.gate.admit()):
            started = time.monotonic()
            response = client.post("/score", json=document())
            assert time.monotonic() - started < 5
            assert_error(
                response, 503, "server: 1 requests already in flight (FOCAL_MAX_IN_FLIGHT)"
            )
            assert response.headers["retry-after"] == "1"
            infer = client.post("/v2/models/focal-eval/infer", json={"inputs": []})
            assert_error(infer, 503, "server: 1 requests already in flight")
            assert client.get("/healthz").status_code == 200  # health is not gated
        assert client.post("/score", json=document()).status_code == 200  # the slot is free again


@pytest.mark.timeout(30)
def test_request_in_flight_holds_its_slot_and_a_second_gets_503() -> None:
    release, entered = threading.Event(), threading.Event()
    logits, labels = batch(10, 3, seed=14)
    with scoring_client(max_in_flight=1) as client:
        scorer = client.app.state.runtime.scorer  # type: ignore[attr-defined]
        score = scorer.score

        def slow_score(batch: Any, keep: Any = None) -> Any:
            entered.set()
            assert release.wait(10), "never released"
            return score(batch, keep)

        scorer.score = slow_score
        results: list[Any] = []
        first = threading.Thread(
            target=lambda: results.append(client.post("/score", json=json_body(logits, labels)))
        )
        first.start()
        try:
            assert entered.wait(10), "the first request never reached the graph"
            second = client.post("/score", json=document())
            assert_error(second, 503, "server: 1 requests already in flight")
        finally:
            release.set()
            first.join(10)
        assert not first.is_alive()
        assert_score_response(results[0].json(), eager(logits, labels))


def test_unexpected_error_is_a_plain_500_and_is_logged(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:

        def broken(batch: Any, keep: Any = None) -> Any:
            raise RuntimeError("secret internals at /opt/graph")

        app.state.runtime.scorer.score = broken
        with caplog.at_level(logging.ERROR, logger="service.core.errors"):
            response = client.post("/score", json=document())
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error"}
    assert "secret" not in response.text
    records = [r for r in caplog.records if r.name == "service.core.errors"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert "POST /score" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], RuntimeError)


def test_json_over_the_json_limit_is_413_naming_the_setting() -> None:
    logits, labels = batch(2000, 3, seed=3)
    body = orjson.dumps(json_body(logits, labels))
    with scoring_client(max_json_bytes=4096) as client:
        response = client.post("/score", content=body, headers={"content-type": "application/json"})
        assert_error(
            response,
            413,
            f"body: {len(body)} bytes of JSON is over the limit of 4096 (FOCAL_MAX_JSON_BYTES);"
            " send large batches as .npz or v2 binary",
        )
        inputs = [
            {"name": "logits", "shape": [2000, 3], "datatype": "FP32", "data": logits.tolist()},
            {"name": "labels", "shape": [2000], "datatype": "INT64", "data": labels.tolist()},
        ]
        v2 = orjson.dumps({"inputs": inputs})
        infer = client.post("/v2/models/focal-eval/infer", content=v2)
        assert_error(infer, 413, f"body: {len(v2)} bytes of JSON is over the limit of 4096")
        archive = io.BytesIO()
        np.savez(archive, logits=logits, labels=labels)  # binary bodies are not JSON
        npz = client.post("/score", content=archive.getvalue(), headers=NPZ)
        assert npz.status_code == 200
