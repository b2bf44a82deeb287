"""Bearer-token auth (FOCAL_AUTH_TOKEN): scoring and /reset guarded, health always open."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from focal_eval.service.app import create_app
from focal_eval.service.core.settings import Settings
from tests.service._inputs import batch
from tests.service._requests import JSON, score_bytes

UNAUTHORIZED = {"error": "Authorization: missing or invalid bearer token"}


@pytest.mark.parametrize("metrics_auth", [False, True])
def test_bearer_token_guards_scoring_and_reset(
    make_settings: Callable[..., Settings], metrics_auth: bool
) -> None:
    settings = make_settings(auth_token=SecretStr("s3cret"), metrics_auth=metrics_auth)
    body = score_bytes(*batch(20, 4, 7, ignore_fraction=0.1))
    with TestClient(create_app(settings)) as client:
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Basic s3cret"}):
            response = client.post("/score", content=body, headers=JSON | headers)
            assert response.status_code == 401
            assert response.json() == UNAUTHORIZED
            assert response.headers["www-authenticate"] == "Bearer"
        assert client.post("/v2/models/focal-eval/infer", content=b"{}").status_code == 401
        assert client.post("/reset").status_code == 401
        good = {"authorization": "Bearer s3cret"}
        assert client.post("/score", content=body, headers=JSON | good).status_code == 200
        assert client.post("/reset", headers=good).status_code == 200
        for route in ("/healthz", "/v2/health/live", "/v2/health/ready", "/v2"):
            assert client.get(route).status_code == 200
        for route in ("/metrics", "/summary"):
            assert client.get(route).status_code == (401 if metrics_auth else 200)
            assert client.get(route, headers=good).status_code == 200


def test_without_a_token_everything_is_open(client: TestClient) -> None:
    assert client.post("/reset").status_code == 200
    assert client.get("/summary").status_code == 200
