"""Request telemetry: every request counted by route and status, the build named."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from focal_eval.service.core.settings import Settings
from tests.service._requests import JSON, scrape


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(window_samples=250, window_seconds=3600)


def test_errors_are_counted_by_route_and_status(client: TestClient) -> None:
    response = client.post("/score", content=b"{", headers=JSON)
    assert response.status_code == 400
    client.get("/no-such-route")
    samples = scrape(client)
    assert (
        samples[("focal_eval_request_errors_total", (("route", "/score"), ("status", "400")))] == 1
    )
    assert (
        samples[("focal_eval_request_errors_total", (("route", "unmatched"), ("status", "404")))]
        == 1
    )


def test_build_info_names_the_model(client: TestClient) -> None:
    model_id = client.get("/healthz").json()["model_id"]
    info = [key for key in scrape(client) if key[0] == "focal_eval_build_info"]
    assert len(info) == 1
    labels = dict(info[0][1])
    assert labels["model_id"] == model_id
    assert labels["kind"] == "evaluation"
    assert labels["gamma"] == "2"
