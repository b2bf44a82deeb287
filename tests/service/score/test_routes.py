"""``POST /score`` through TestClient: every number against eager focal, both body types."""

# ruff: noqa: E501 (a table of content types and their exact error messages, one per line)

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from tests.service._inputs import batch
from tests.service._requests import NPZ, document, json_body, npz_body
from tests.service.reference import (
    DEFAULT_GAMMA,
    DEFAULT_IGNORE_INDEX,
    assert_error,
    assert_score_response,
    eager,
)


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


def test_npz_as_octet_stream_is_accepted(client: TestClient) -> None:
    logits, labels = batch(8, 3, seed=11)
    body = npz_body(logits=logits, labels=labels)
    response = client.post(
        "/score", content=body, headers={"content-type": "application/octet-stream"}
    )
    assert_score_response(response.json(), eager(logits, labels))


def test_json_with_a_charset_parameter_is_accepted(client: TestClient) -> None:
    logits, labels = batch(4, 3, seed=12)
    response = client.post(
        "/score",
        content=orjson.dumps(json_body(logits, labels)),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert_score_response(response.json(), eager(logits, labels))


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param({"content-type": "text/plain"}, 'Content-Type: "text/plain" is not supported', id="text_plain"),
        pytest.param({"content-type": "application/xml"}, 'Content-Type: "application/xml" is not supported', id="xml"),
        pytest.param({}, 'Content-Type: "missing" is not supported', id="missing"),
    ],
)  # fmt: skip
def test_unsupported_content_type_is_415(
    client: TestClient, headers: dict[str, str], message: str
) -> None:
    response = client.post(
        "/score", content=b'{"logits": [[1, 2]], "labels": [0]}', headers=headers
    )
    assert_error(response, 415, message, "use application/json or application/x-npz")


def test_query_parameters_with_a_json_body_are_422(client: TestClient) -> None:
    response = client.post("/score", json=document(), params={"gamma": "1"})
    assert_error(response, 422, "gamma: query parameters are for .npz bodies")
