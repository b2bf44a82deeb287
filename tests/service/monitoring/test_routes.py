"""/summary and /reset: summaries merge across replicas, a reset releases windows only."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from focal_eval.service.app import create_app
from focal_eval.service.core.settings import Settings
from tests.service._inputs import IGNORE_INDEX, batch
from tests.service._requests import post, scrape
from tests.service.reference import eager

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
