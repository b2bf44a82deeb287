"""Prometheus counters, windows, /summary, /reset, auth: every number against eager focal/."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
import torch
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from focal import compute, update
from service.app import create_app
from service.core.settings import Settings
from service.monitoring.monitor import LOSS_BUCKETS

C = 4
IGNORE = -100


def batch(n: int, seed: int, c: int = C) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, c)) * 2).astype(np.float32)
    labels = rng.integers(0, c, n)
    labels[rng.random(n) < 0.1] = IGNORE
    return logits, labels


def body(logits: np.ndarray, labels: np.ndarray, **extra: Any) -> bytes:
    document = {"logits": logits, "labels": labels, "per_sample": False, **extra}
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def post(client: TestClient, logits: np.ndarray, labels: np.ndarray, **extra: Any) -> Any:
    response = client.post(
        "/score",
        content=body(logits, labels, **extra),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and sorted labels."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def eager(logits: np.ndarray, labels: np.ndarray) -> tuple[Any, Any]:
    per_sample, statistics = update(torch.from_numpy(logits), torch.from_numpy(labels), None, 2.0)
    return per_sample, statistics


@pytest.fixture
def monitored() -> Iterator[TestClient]:
    settings = Settings(threads=1, window_samples=250, window_seconds=3600)
    with TestClient(create_app(settings)) as client:
        yield client


def test_counters_move_by_exactly_what_a_request_scored(monitored: TestClient) -> None:
    logits, labels = batch(300, 0)
    post(monitored, logits, labels)
    per_sample, statistics = eager(logits, labels)
    samples = scrape(monitored)
    valid = labels != IGNORE
    source = ("source", "default")
    assert samples[("focal_eval_samples_total", (source,))] == valid.sum()
    correct = (logits.argmax(1) == labels) & valid
    assert samples[("focal_eval_correct_total", (source,))] == correct.sum()
    focal = per_sample.focal_loss.numpy()
    assert samples[("focal_eval_focal_loss_total", (source,))] == pytest.approx(
        focal.sum(), rel=1e-5
    )
    for k in range(C):
        labels_k = (("class", str(k)), source)
        assert samples[("focal_eval_class_samples_total", labels_k)] == (labels == k).sum()
        assert (
            samples[("focal_eval_class_correct_total", labels_k)] == (correct & (labels == k)).sum()
        )
        predicted = (logits.argmax(1) == k) & valid
        assert samples[("focal_eval_class_predicted_total", labels_k)] == predicted.sum()
        assert samples[("focal_eval_class_focal_loss_total", labels_k)] == pytest.approx(
            float(statistics.focal_loss_sum[k]), rel=1e-5
        )
    for bound in LOSS_BUCKETS:
        key = ("focal_eval_sample_focal_loss_bucket", (("le", f"{bound:g}"), source))
        assert samples[key] == (focal[valid] <= bound).sum()
    assert samples[("focal_eval_sample_focal_loss_count", (source,))] == valid.sum()
    route = ("route", "/score")
    assert samples[("focal_eval_samples_scored_total", (route,))] == 300
    assert (
        samples[("focal_eval_requests_total", (("method", "POST"), route, ("status", "200")))] == 1
    )
    assert samples[("focal_eval_request_body_bytes_sum", (route,))] == len(body(logits, labels))
    assert samples[("focal_eval_request_duration_seconds_count", (route,))] == 1


def test_errors_are_counted_by_route_and_status(monitored: TestClient) -> None:
    response = monitored.post("/score", content=b"{", headers={"content-type": "application/json"})
    assert response.status_code == 400
    monitored.get("/no-such-route")
    samples = scrape(monitored)
    assert (
        samples[("focal_eval_request_errors_total", (("route", "/score"), ("status", "400")))] == 1
    )
    assert (
        samples[("focal_eval_request_errors_total", (("route", "unmatched"), ("status", "404")))]
        == 1
    )


def test_window_gauges_equal_eager_metrics_over_the_window(monitored: TestClient) -> None:
    batches = [batch(n, seed) for seed, n in enumerate((200, 120, 150), start=10)]
    for logits, labels in batches:
        post(monitored, logits, labels)
    # window_samples=250: the last two batches (valid 120 + 150 rows, about 243) are not
    # enough without the first... check which batches the window holds from its sample count
    samples = scrape(monitored)
    held = samples[("focal_eval_window_samples", (("source", "default"),))]
    valid = [int((labels != IGNORE).sum()) for _, labels in batches]
    kept = next(k for k in range(3) if sum(valid[k:]) == held)
    assert sum(valid[kept + 1 :]) < 250 <= sum(valid[kept:])
    logits = np.concatenate([b[0] for b in batches[kept:]])
    labels = np.concatenate([b[1] for b in batches[kept:]])
    metrics = compute(eager(logits, labels)[1])
    for name in (
        "balanced_accuracy",
        "macro_f1",
        "mean_focal_loss",
        "class_balanced_focal_loss",
        "expected_calibration_error",
    ):
        gauge = samples[(f"focal_eval_window_{name}", (("source", "default"),))]
        assert gauge == pytest.approx(float(getattr(metrics, name)), rel=1e-6, abs=1e-9), name


def summary_statistics(client: TestClient, part: str) -> dict[str, np.ndarray]:
    document = client.get("/summary").json()
    return {k: np.asarray(v) for k, v in document["sources"]["default"][part]["statistics"].items()}


def test_summaries_of_two_replicas_merge_into_one_fed_everything() -> None:
    batches = [batch(n, seed) for seed, n in enumerate((90, 60, 130), start=20)]
    settings = Settings(threads=1)
    with (
        TestClient(create_app(settings)) as first,
        TestClient(create_app(settings)) as second,
        TestClient(create_app(settings)) as both,
    ):
        for index, (logits, labels) in enumerate(batches):
            post(first if index < 2 else second, logits, labels)
            post(both, logits, labels)
        a, b = summary_statistics(first, "lifetime"), summary_statistics(second, "lifetime")
        merged = {name: a[name] + b[name] for name in a}
        everything = summary_statistics(both, "lifetime")
        for name in everything:
            np.testing.assert_allclose(merged[name], everything[name], rtol=1e-12, err_msg=name)
        lifetime = both.get("/summary").json()["sources"]["default"]["lifetime"]
    logits = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    expected = compute(eager(logits, labels)[1])
    assert lifetime["samples"] == int((labels != IGNORE).sum())
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "mean_focal_loss"):
        assert lifetime["metrics"][name] == pytest.approx(float(getattr(expected, name)), rel=1e-6)


def test_batch_above_the_monitor_class_cap_is_scored_counted_and_not_monitored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with TestClient(create_app(Settings(threads=1, monitor_max_classes=5))) as client:
        logits, labels = batch(100, 1, c=7)
        with caplog.at_level(logging.WARNING, logger="service.monitoring.monitor"):
            got = post(client, logits, labels)
            post(client, logits, labels)
        assert (got["monitored"], got["unmonitored_reason"]) == (False, "too_many_classes")
        assert got["valid"] == (labels != IGNORE).sum()
        samples = scrape(client)
        explicit = client.post(
            "/score",
            content=body(logits, labels, monitor=True),
            headers={"content-type": "application/json"},
        )
    assert not [key for key in samples if key[0].startswith("focal_eval_class_")]
    assert ("focal_eval_samples_total", (("source", "default"),)) not in samples
    key = (
        "focal_eval_unmonitored_batches_total",
        (("reason", "too_many_classes"), ("source", "default")),
    )
    assert samples[key] == 2
    logged = [r.getMessage() for r in caplog.records if r.name == "service.monitoring.monitor"]
    assert len(logged) == 1  # the first of a kind; then at most once a minute
    assert "the batch has 7 classes, more than the monitor keeps" in logged[0]
    assert explicit.status_code == 422
    assert explicit.json() == {
        "error": "monitor: the batch has 7 classes, more than the monitor keeps"
        " (FOCAL_MONITOR_MAX_CLASSES=5); or send monitor=false"
    }


def test_per_request_switch_and_source_label(monitored: TestClient) -> None:
    logits, labels = batch(50, 2)
    assert post(monitored, logits, labels, monitor=False)["monitored"] is False
    assert ("focal_eval_samples_total", (("source", "default"),)) not in scrape(monitored)
    assert post(monitored, logits, labels, source="canary")["monitored"] is True
    samples = scrape(monitored)
    assert (
        samples[("focal_eval_samples_total", (("source", "canary"),))] == (labels != IGNORE).sum()
    )
    assert samples[("focal_eval_samples_scored_total", (("route", "/score"),))] == 100
    response = monitored.post(
        "/score",
        content=body(logits, labels, source="staging"),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    allowed = "['default', 'canary', 'prod']"
    message = f"source: 'staging' is not one of {allowed} (FOCAL_MONITOR_SOURCES)"
    assert response.json() == {"error": message}


def test_monitoring_default_off_is_honoured() -> None:
    with TestClient(create_app(Settings(threads=1, monitor_default=False))) as client:
        logits, labels = batch(30, 3)
        assert post(client, logits, labels)["monitored"] is False
        assert post(client, logits, labels, monitor=True)["monitored"] is True


def test_a_batch_with_another_class_count_is_counted_not_monitored(
    monitored: TestClient,
) -> None:
    post(monitored, *batch(30, 4))
    got = post(monitored, *batch(30, 5, c=6))
    assert (got["monitored"], got["unmonitored_reason"]) == (False, "class_count")
    key = (
        "focal_eval_unmonitored_batches_total",
        (("reason", "class_count"), ("source", "default")),
    )
    assert scrape(monitored)[key] == 1
    explicit = monitored.post(
        "/score",
        content=body(*batch(30, 5, c=6), monitor=True),
        headers={"content-type": "application/json"},
    )
    assert explicit.status_code == 422
    assert explicit.json() == {
        "error": "monitor: source 'default' monitors 4 classes and the batch has 6"
        " (POST /reset?source=default to monitor another count); or send monitor=false"
    }
    assert post(monitored, *batch(30, 6), source="canary")["monitored"] is True  # its own pin


def test_reset_releases_windows_and_summary_but_not_counters(monitored: TestClient) -> None:
    logits, labels = batch(80, 6)
    post(monitored, logits, labels)
    post(monitored, logits, labels, source="canary")
    assert monitored.post("/reset", params={"source": "default"}).json() == {"status": "reset"}
    assert set(monitored.get("/summary").json()["sources"]) == {"canary"}
    assert monitored.post("/reset").json() == {"status": "reset"}
    assert monitored.get("/summary").json()["sources"] == {}
    samples = scrape(monitored)
    assert (
        samples[("focal_eval_samples_total", (("source", "default"),))] == (labels != IGNORE).sum()
    )
    assert ("focal_eval_window_samples", (("source", "default"),)) not in samples
    # a released source takes the class count of its next batch
    assert post(monitored, *batch(30, 7, c=5))["monitored"] is True
    response = monitored.post("/reset", params={"source": "staging"})
    assert response.status_code == 422
    assert response.json()["error"].startswith("source: 'staging' is not one of")


def test_build_info_names_the_model(monitored: TestClient) -> None:
    model_id = monitored.get("/healthz").json()["model_id"]
    info = [key for key in scrape(monitored) if key[0] == "focal_eval_build_info"]
    assert len(info) == 1
    labels = dict(info[0][1])
    assert labels["model_id"] == model_id
    assert labels["kind"] == "evaluation"
    assert labels["gamma"] == "2"


UNAUTHORIZED = {"error": "Authorization: missing or invalid bearer token"}


@pytest.mark.parametrize("metrics_auth", [False, True])
def test_bearer_token_guards_scoring_and_reset(metrics_auth: bool) -> None:
    settings = Settings(threads=1, auth_token=SecretStr("s3cret"), metrics_auth=metrics_auth)
    logits, labels = batch(20, 7)
    json = {"content-type": "application/json"}
    with TestClient(create_app(settings)) as client:
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Basic s3cret"}):
            response = client.post("/score", content=body(logits, labels), headers=json | headers)
            assert response.status_code == 401
            assert response.json() == UNAUTHORIZED
            assert response.headers["www-authenticate"] == "Bearer"
        assert client.post("/v2/models/focal-eval/infer", content=b"{}").status_code == 401
        assert client.post("/reset").status_code == 401
        good = {"authorization": "Bearer s3cret"}
        assert (
            client.post("/score", content=body(logits, labels), headers=json | good).status_code
            == 200
        )
        assert client.post("/reset", headers=good).status_code == 200
        for route in ("/healthz", "/v2/health/live", "/v2/health/ready", "/v2"):
            assert client.get(route).status_code == 200
        for route in ("/metrics", "/summary"):
            assert client.get(route).status_code == (401 if metrics_auth else 200)
            assert client.get(route, headers=good).status_code == 200


def test_without_a_token_everything_is_open(monitored: TestClient) -> None:
    assert monitored.post("/reset").status_code == 200
    assert monitored.get("/summary").status_code == 200
