"""Bounded concurrency: a request over FOCAL_MAX_IN_FLIGHT is a 503 at once, never a queue."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.service._inputs import batch
from tests.service._requests import document, json_body
from tests.service.reference import assert_error, assert_score_response, eager

ONE_SLOT = pytest.mark.parametrize(
    "settings", [pytest.param({"max_in_flight": 1}, id="one_slot")], indirect=True
)


@ONE_SLOT
@pytest.mark.timeout(30)
def test_saturated_server_answers_503_with_retry_after_at_once(client: TestClient) -> None:
    app: FastAPI = client.app  # type: ignore[assignment]
    assert client.portal is not None
    with client.portal.wrap_async_context_manager(app.state.runtime.gate.admit()):
        started = time.monotonic()
        response = client.post("/score", json=document())
        assert time.monotonic() - started < 5
        assert_error(response, 503, "server: 1 requests already in flight (FOCAL_MAX_IN_FLIGHT)")
        assert response.headers["retry-after"] == "1"
        infer = client.post("/v2/models/focal-eval/infer", json={"inputs": []})
        assert_error(infer, 503, "server: 1 requests already in flight")
        assert client.get("/healthz").status_code == 200  # health is not gated
    assert client.post("/score", json=document()).status_code == 200  # the slot is free again


@ONE_SLOT
@pytest.mark.timeout(30)
def test_request_in_flight_holds_its_slot_and_a_second_gets_503(client: TestClient) -> None:
    release, entered = threading.Event(), threading.Event()
    logits, labels = batch(10, 3, seed=14)
    scorer = client.app.state.runtime.scorers.multiclass  # type: ignore[attr-defined]
    score = scorer.score

    def slow_score(batch: Any, keep: Any = None, ranking: Any = None, **options: Any) -> Any:
        entered.set()
        assert release.wait(10), "never released"
        return score(batch, keep, ranking, **options)

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
