"""Liveness and readiness: 503 with a message until the lifespan has loaded and warmed up."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.service.reference import MODEL_ID, assert_error

NOT_READY = "server: not ready (the evaluation graph is loading)"
SCORE_BODY = {"logits": [[1.0, 2.0]], "labels": [0]}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/healthz", id="healthz"),
        pytest.param("GET", "/v2/health/ready", id="v2_ready"),
        pytest.param("GET", "/v2/models/focal-eval/ready", id="v2_model_ready"),
        pytest.param("GET", "/v2/models/focal-eval", id="v2_model_metadata"),
        pytest.param("POST", "/score", id="score"),
        pytest.param("POST", "/v2/models/focal-eval/infer", id="v2_infer"),
    ],
)
def test_before_the_lifespan_everything_but_liveness_is_503(
    app: FastAPI, method: str, path: str
) -> None:
    client = TestClient(app)  # no `with`: the lifespan has not run, nothing is loaded
    response = client.request(method, path, json=SCORE_BODY)
    assert_error(response, 503, NOT_READY)
    assert response.headers["retry-after"] == "1"


def test_liveness_is_200_before_the_lifespan(app: FastAPI) -> None:
    response = TestClient(app).get("/v2/health/live")
    assert response.status_code == 200
    assert response.json() == {"live": True}


def test_after_the_lifespan_the_server_is_live_and_ready(client: TestClient) -> None:
    healthz = client.get("/healthz")
    assert healthz.status_code == 200
    assert healthz.json() == {"status": "ok", "model_id": MODEL_ID}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.post("/score", json=SCORE_BODY).status_code == 200


def test_readiness_drops_once_the_lifespan_has_ended(app: FastAPI) -> None:
    with TestClient(app) as client:
        assert client.get("/v2/health/ready").status_code == 200
    after = TestClient(app)
    assert_error(after.get("/v2/health/ready"), 503, NOT_READY)
    assert_error(after.post("/score", json=SCORE_BODY), 503, NOT_READY)
    assert after.get("/v2/health/live").status_code == 200


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"ignore_index": 0}, id="class_0"),
        pytest.param({"ignore_index": 2}, id="class_2"),
    ],
    indirect=True,
)
def test_server_starts_when_the_default_ignore_index_is_a_class(client: TestClient) -> None:
    assert client.get("/v2/health/ready").status_code == 200
