"""Fixtures of the report tests: real results of each shape, made once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from focal_eval.evaluate.cli import main as evaluate
from focal_eval.service.app import create_app
from focal_eval.service.core.settings import Settings
from tests.report._inputs import REGIONS, Scored, confused, multilabel, post

C = 6


@pytest.fixture(scope="session")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    """The app, monitoring nothing unless a request asks."""
    with TestClient(create_app(Settings(threads=1, monitor_default=False))) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def multiclass(client: TestClient, results: Path) -> Scored:
    """A /score response of 400 rows, 6 classes, with the ranking histograms."""
    logits, labels = confused(400, C, seed=1)
    return post(client, results / "multiclass.json", logits, labels, ranking=True)


@pytest.fixture(scope="session")
def wide(client: TestClient, results: Path) -> Scored:
    """A /score response of 40 classes: past the annotated confusion matrix."""
    logits, labels = confused(2000, 40, seed=2)
    return post(client, results / "wide.json", logits, labels)


@pytest.fixture(scope="session")
def multilabel_scored(client: TestClient, results: Path) -> Scored:
    logits, targets = multilabel(300, 5, seed=3)
    return post(client, results / "multilabel.json", logits, targets)


@pytest.fixture(scope="session")
def binary(client: TestClient, results: Path) -> Scored:
    logits, targets = multilabel(300, 1, seed=4)
    return post(client, results / "binary.json", logits[:, 0], targets[:, 0])


@pytest.fixture(scope="session")
def summary(results: Path) -> Scored:
    """/summary after three multi-class batches of 200 rows (the window: the last one) to
    source default and one multi-label batch to canary; logits and labels: the multi-class."""
    settings = Settings(threads=1, window_samples=200, window_buckets=1)
    logits, labels = confused(600, C, seed=5)
    with TestClient(create_app(settings)) as app:
        for rows in (slice(0, 200), slice(200, 400), slice(400, 600)):
            post(app, results / "batch.json", logits[rows], labels[rows])
        canary, targets = multilabel(100, 3, seed=6)
        post(app, results / "batch.json", canary, targets, source="canary")
        response = app.get("/summary")
    assert response.status_code == 200
    path = results / "summary.json"
    path.write_bytes(response.content)
    return Scored(path, response.json(), logits, labels)


@pytest.fixture(scope="session")
def evaluated(results: Path) -> tuple[Scored, np.ndarray]:
    """A focal evaluate result of a Parquet file sliced by region; and the regions."""
    logits, labels = confused(900, C, seed=7)
    region = np.random.default_rng(8).choice(np.array(REGIONS), len(labels))
    column = pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), C)
    data = results / "data.parquet"
    pq.write_table(pa.table({"logits": column, "labels": labels, "region": region}), data)
    out = results / "evaluated.json"
    assert evaluate([str(data), "--out", str(out), "--slice-by", "region"]) == 0
    return Scored(out, orjson.loads(out.read_bytes()), logits, labels), region
