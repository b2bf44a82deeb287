"""/summary and /reset: summaries merge across replicas, a reset releases windows only."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from focal_eval.service.app import create_app
from focal_eval.service.core.settings import Settings
from tests.service._inputs import IGNORE_INDEX, batch, label_batch
from tests.service._requests import json_body, post, scrape
from tests.service.reference import eager, eager_multilabel

C = 4


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(window_samples=250, window_seconds=3600)


def summary_statistics(client: TestClient, part: str) -> dict[str, np.ndarray]:
    document = client.get("/summary").json()
    return {k: np.asarray(v) for k, v in document["sources"]["default"][part]["statistics"].items()}


def test_summaries_of_two_replicas_merge_into_one_fed_everything(
    make_settings: Callable[..., Settings],
) -> None:
    batches = [
        batch(n, C, seed, ignore_fraction=0.1) for seed, n in enumerate((90, 60, 130), start=20)
    ]
    settings = make_settings()
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
    expected = eager(logits, labels)
    assert lifetime["samples"] == int((labels != IGNORE_INDEX).sum())
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "mean_focal_loss"):
        assert lifetime["metrics"][name] == pytest.approx(float(expected[name]), rel=1e-6)


def test_reset_releases_windows_and_summary_but_not_counters(client: TestClient) -> None:
    logits, labels = batch(80, C, 6, ignore_fraction=0.1)
    post(client, logits, labels)
    post(client, logits, labels, source="canary")
    assert client.post("/reset", params={"source": "default"}).json() == {"status": "reset"}
    assert set(client.get("/summary").json()["sources"]) == {"canary"}
    assert client.post("/reset").json() == {"status": "reset"}
    assert client.get("/summary").json()["sources"] == {}
    samples = scrape(client)
    assert (
        samples[("focal_eval_samples_total", (("source", "default"),))]
        == (labels != IGNORE_INDEX).sum()
    )
    assert ("focal_eval_window_samples", (("source", "default"),)) not in samples
    # a released source takes the class count of its next batch
    assert post(client, *batch(30, 5, 7, ignore_fraction=0.1))["monitored"] is True
    response = client.post("/reset", params={"source": "staging"})
    assert response.status_code == 422
    assert response.json()["error"].startswith('source: "staging" is not one of')


# --- multi-label sources --------------------------------------------------------------------


def test_a_multilabel_source_counts_each_label_and_shows_its_window(client: TestClient) -> None:
    batches = [label_batch(n, 3, seed, ignore_fraction=0.1) for seed, n in ((30, 70), (31, 50))]
    for logits, targets in batches:
        body = json_body(logits, targets, source="canary", per_sample=False)
        assert client.post("/score", json=body).json()["monitored"] is True
    logits = np.concatenate([b[0] for b in batches])
    targets = np.concatenate([b[1] for b in batches])
    want = eager_multilabel(logits, targets)
    samples = scrape(client)
    for name, statistic in (
        ("true_positives", "true_positive"),
        ("false_positives", "false_positive"),
        ("false_negatives", "false_negative"),
        ("true_negatives", "true_negative"),
    ):
        counted = [
            samples[(f"focal_eval_label_{name}_total", (("label", str(j)), ("source", "canary")))]
            for j in range(3)
        ]
        assert counted == want[statistic].tolist(), name
    canary = (("source", "canary"),)
    assert samples[("focal_eval_samples_total", canary)] == int(want["samples"])
    for gauge in ("macro_f1", "micro_f1", "macro_average_precision", "mean_focal_loss"):
        assert samples[(f"focal_eval_window_{gauge}", canary)] == pytest.approx(
            float(want[gauge]), rel=1e-6
        ), gauge
    summary = client.get("/summary").json()["sources"]["canary"]
    assert (summary["task"], summary["num_labels"]) == ("multilabel", 3)
    assert summary["lifetime"]["metrics"]["macro_average_precision"] == pytest.approx(
        float(want["macro_average_precision"]), rel=1e-6
    )


def test_a_source_monitors_one_task_until_it_is_reset(client: TestClient) -> None:
    logits, labels = batch(20, 3, 40)
    assert post(client, logits, labels)["monitored"] is True
    label_logits, targets = label_batch(20, 3, 41)
    got = client.post("/score", json=json_body(label_logits, targets)).json()
    assert (got["monitored"], got["unmonitored_reason"]) == (False, "task")
    response = client.post("/score", json=json_body(label_logits, targets, monitor=True))
    assert response.status_code == 422
    assert response.json()["error"] == (
        "monitor: source 'default' monitors multiclass batches and the batch is multilabel"
        " (POST /reset?source=default to monitor another task); or send monitor=false"
    )
    samples = scrape(client)
    assert (
        samples[
            ("focal_eval_unmonitored_batches_total", (("reason", "task"), ("source", "default")))
        ]
        == 1
    )
    client.post("/reset", params={"source": "default"})
    assert client.post("/score", json=json_body(label_logits, targets)).json()["monitored"] is True
