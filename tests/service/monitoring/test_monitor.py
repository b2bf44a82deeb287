"""The monitor: Prometheus counters and window gauges, every number against eager focal/."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from focal_eval.service.app import create_app
from focal_eval.service.core.settings import Settings
from focal_eval.service.monitoring.monitor import LOSS_BUCKETS
from tests.service._inputs import IGNORE_INDEX, batch, label_batch
from tests.service._requests import JSON, Samples, json_body, post, score_bytes, scrape
from tests.service.reference import eager

C = 4


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """A window of 250 samples (or an hour): a few batches overflow it."""
    return make_settings(window_samples=250, window_seconds=3600)


def test_counters_move_by_exactly_what_a_request_scored(client: TestClient) -> None:
    logits, labels = batch(300, C, 0, ignore_fraction=0.1)
    post(client, logits, labels)
    want = eager(logits, labels)
    samples = scrape(client)
    valid = labels != IGNORE_INDEX
    source = ("source", "default")
    assert samples[("focal_eval_samples_total", (source,))] == valid.sum()
    correct = (logits.argmax(1) == labels) & valid
    assert samples[("focal_eval_correct_total", (source,))] == correct.sum()
    focal = want["focal_loss"]
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
            float(want["focal_loss_sum"][k]), rel=1e-5
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
    assert samples[("focal_eval_request_body_bytes_sum", (route,))] == len(
        score_bytes(logits, labels)
    )
    assert samples[("focal_eval_request_duration_seconds_count", (route,))] == 1


def test_window_gauges_equal_eager_metrics_over_the_window(client: TestClient) -> None:
    batches = [
        batch(n, C, seed, ignore_fraction=0.1) for seed, n in enumerate((200, 120, 150), start=10)
    ]
    for logits, labels in batches:
        post(client, logits, labels)
    # window_samples=250: the last two batches (valid 120 + 150 rows, about 243) are not
    # enough without the first... check which batches the window holds from its sample count
    samples = scrape(client)
    held = samples[("focal_eval_window_samples", (("source", "default"),))]
    valid = [int((labels != IGNORE_INDEX).sum()) for _, labels in batches]
    kept = next(k for k in range(3) if sum(valid[k:]) == held)
    assert sum(valid[kept + 1 :]) < 250 <= sum(valid[kept:])
    logits = np.concatenate([b[0] for b in batches[kept:]])
    labels = np.concatenate([b[1] for b in batches[kept:]])
    metrics = eager(logits, labels)
    for name in (
        "balanced_accuracy",
        "macro_f1",
        "mean_focal_loss",
        "class_balanced_focal_loss",
        "expected_calibration_error",
    ):
        gauge = samples[(f"focal_eval_window_{name}", (("source", "default"),))]
        assert gauge == pytest.approx(float(metrics[name]), rel=1e-6, abs=1e-9), name


def test_batch_above_the_monitor_class_cap_is_scored_counted_and_not_monitored(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(make_settings(monitor_max_classes=5))) as client:
        logits, labels = batch(100, 7, 1, ignore_fraction=0.1)
        with caplog.at_level(logging.WARNING, logger="focal_eval.service.monitoring.monitor"):
            got = post(client, logits, labels)
            post(client, logits, labels)
        assert (got["monitored"], got["unmonitored_reason"]) == (False, "too_many_classes")
        assert got["valid"] == (labels != IGNORE_INDEX).sum()
        samples = scrape(client)
        explicit = client.post(
            "/score", content=score_bytes(logits, labels, monitor=True), headers=JSON
        )
    assert not [key for key in samples if key[0].startswith("focal_eval_class_")]
    assert ("focal_eval_samples_total", (("source", "default"),)) not in samples
    key = (
        "focal_eval_unmonitored_batches_total",
        (("reason", "too_many_classes"), ("source", "default")),
    )
    assert samples[key] == 2
    logged = [
        r.getMessage() for r in caplog.records if r.name == "focal_eval.service.monitoring.monitor"
    ]
    assert len(logged) == 1  # the first of a kind; then at most once a minute
    assert "the batch has 7 classes, more than the monitor keeps" in logged[0]
    assert explicit.status_code == 422
    assert explicit.json() == {
        "error": "monitor: the batch has 7 classes, more than the monitor keeps"
        " (FOCAL_MONITOR_MAX_CLASSES=5); or send monitor=false"
    }


def test_a_batch_with_another_class_count_is_counted_not_monitored(client: TestClient) -> None:
    post(client, *batch(30, C, 4, ignore_fraction=0.1))
    got = post(client, *batch(30, 6, 5, ignore_fraction=0.1))
    assert (got["monitored"], got["unmonitored_reason"]) == (False, "class_count")
    key = (
        "focal_eval_unmonitored_batches_total",
        (("reason", "class_count"), ("source", "default")),
    )
    assert scrape(client)[key] == 1
    explicit = client.post(
        "/score",
        content=score_bytes(*batch(30, 6, 5, ignore_fraction=0.1), monitor=True),
        headers=JSON,
    )
    assert explicit.status_code == 422
    assert explicit.json() == {
        "error": "monitor: source 'default' monitors 4 classes and the batch has 6"
        " (POST /reset?source=default to monitor another count); or send monitor=false"
    }
    canary = batch(30, C, 6, ignore_fraction=0.1)
    assert post(client, *canary, source="canary")["monitored"] is True  # its own pin


def _bins(values: np.ndarray, num_bins: int = 15) -> np.ndarray:
    """Bin b holds values in (b / B, (b + 1) / B] (the first bin also holds 0)."""
    bins: np.ndarray = np.clip(np.ceil(values * num_bins) - 1, 0, num_bins - 1).astype(int)
    return bins


def _calibration(samples: Samples, source: str) -> list[np.ndarray]:
    """The three calibration counters of ``source``, indexed by bin."""
    return [
        np.array(
            [
                samples.get(
                    (f"focal_eval_calibration_{name}_total", (("bin", str(b)), ("source", source))),
                    0,
                )
                for b in range(15)
            ]
        )
        for name in ("samples", "predicted", "observed")
    ]


def test_calibration_counters_bin_confidence_and_give_the_ece(client: TestClient) -> None:
    logits, labels = batch(400, C, 3, ignore_fraction=0.1)
    post(client, logits[:150], labels[:150])
    post(client, logits[150:], labels[150:])
    x = logits.astype(np.float64)
    probabilities = np.exp(x - x.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    valid = labels != IGNORE_INDEX
    confidence, correct = probabilities.max(1)[valid], (x.argmax(1) == labels)[valid]
    bins = _bins(confidence)
    counted, predicted, observed = _calibration(scrape(client), "default")
    np.testing.assert_array_equal(counted, np.bincount(bins, minlength=15))
    np.testing.assert_allclose(predicted, np.bincount(bins, confidence, 15), rtol=1e-5)
    np.testing.assert_array_equal(observed, np.bincount(bins, correct, 15))
    # the rules' ECE from counters: sum_b |observed_b - predicted_b| / N
    ece = np.abs(observed - predicted).sum() / counted.sum()
    want = sum(
        (bins == b).sum() * abs(correct[bins == b].mean() - confidence[bins == b].mean())
        for b in np.unique(bins)
    ) / len(bins)
    assert ece == pytest.approx(want, rel=1e-5)


def test_multilabel_calibration_counters_bin_each_decision(client: TestClient) -> None:
    logits, targets = label_batch(120, 3, 5, ignore_fraction=0.1)
    body = json_body(logits, targets, source="canary", per_sample=False)
    assert client.post("/score", json=body).json()["monitored"] is True
    decided = targets != IGNORE_INDEX
    probability = (1 / (1 + np.exp(-logits.astype(np.float64))))[decided]
    positive = targets[decided] == 1
    bins = _bins(probability)
    counted, predicted, observed = _calibration(scrape(client), "canary")
    np.testing.assert_array_equal(counted, np.bincount(bins, minlength=15))
    np.testing.assert_allclose(predicted, np.bincount(bins, probability, 15), rtol=1e-5)
    np.testing.assert_array_equal(observed, np.bincount(bins, positive, 15))
