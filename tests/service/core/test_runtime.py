"""What the routes share: each request's monitoring choice (default, switch, source)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from focal_eval.service.app import create_app
from focal_eval.service.core.settings import Settings
from tests.service._inputs import IGNORE_INDEX, batch
from tests.service._requests import JSON, post, score_bytes, scrape

C = 4


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(window_samples=250, window_seconds=3600)


def test_per_request_switch_and_source_label(client: TestClient) -> None:
    logits, labels = batch(50, C, 2, ignore_fraction=0.1)
    assert post(client, logits, labels, monitor=False)["monitored"] is False
    assert ("focal_eval_samples_total", (("source", "default"),)) not in scrape(client)
    assert post(client, logits, labels, source="canary")["monitored"] is True
    samples = scrape(client)
    assert (
        samples[("focal_eval_samples_total", (("source", "canary"),))]
        == (labels != IGNORE_INDEX).sum()
    )
    assert samples[("focal_eval_samples_scored_total", (("route", "/score"),))] == 100
    response = client.post(
        "/score", content=score_bytes(logits, labels, source="staging"), headers=JSON
    )
    assert response.status_code == 422
    allowed = '["default","canary","prod"]'
    message = f'source: "staging" is not one of {allowed} (FOCAL_MONITOR_SOURCES)'
    assert response.json() == {"error": message}


def test_monitoring_default_off_is_honoured(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(monitor_default=False))) as client:
        logits, labels = batch(30, C, 3, ignore_fraction=0.1)
        assert post(client, logits, labels)["monitored"] is False
        assert post(client, logits, labels, monitor=True)["monitored"] is True
