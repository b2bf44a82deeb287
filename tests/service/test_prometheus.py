"""A real Prometheus scrapes a real server; PromQL over the counters equals focal/'s metrics."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import torch

from focal_eval.focal import compute, update
from focal_eval.service.testing import focal_server, free_port
from tests.service._inputs import batch
from tests.system import require

C = 5
BALANCED_ACCURACY = (
    'avg(sum by (class) (focal_eval_class_correct_total{source="default"})'
    ' / (sum by (class) (focal_eval_class_samples_total{source="default"}) > 0))'
)
RECALL = (
    'sum by (class) (focal_eval_class_correct_total{source="default"})'
    ' / sum by (class) (focal_eval_class_samples_total{source="default"})'
)


@pytest.fixture(scope="module")
def scored() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """A server that has scored three batches; their logits and labels."""
    logits, labels = batch(900, C, seed=0)
    labels[labels == 4] = 3  # class 4 has no support: PromQL must skip it, as focal/ does
    with focal_server({"FOCAL_THREADS": "1"}) as server:
        url = server.url
        for rows in (slice(0, 300), slice(300, 700), slice(700, 900)):
            body = {"logits": logits[rows], "labels": labels[rows], "per_sample": False}
            response = httpx.post(
                f"{url}/score",
                content=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                headers={"content-type": "application/json"},
                timeout=10,
            )
            assert response.status_code == 200
        yield url, logits, labels


@pytest.fixture(scope="module")
def prometheus(
    scored: tuple[str, np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Prometheus on 127.0.0.1 scraping the server every second, with its own config and data."""
    binary = require("prometheus", "prometheus", "apt-get install prometheus")
    target = scored[0].removeprefix("http://")
    directory = tmp_path_factory.mktemp("prometheus")
    config = directory / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: focal\n    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def query(
    prometheus: str, promql: str, wait_for_series: int = 1, timeout_s: float = 40
) -> list[dict[str, Any]]:
    """The instant-vector result once it has ``wait_for_series`` series (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5)
            result: list[dict[str, Any]] = (
                response.json()["data"]["result"] if response.status_code == 200 else []
            )
        except httpx.TransportError:
            result = []
        if len(result) >= wait_for_series:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"no {wait_for_series} series for {promql!r} within {timeout_s} s")
        time.sleep(0.5)


def test_promql_balanced_accuracy_equals_focal(
    scored: tuple[str, np.ndarray, np.ndarray], prometheus: str
) -> None:
    _, logits, labels = scored
    expected = compute(update(torch.from_numpy(logits), torch.from_numpy(labels))[1])
    query(prometheus, 'focal_eval_samples_total{source="default"} == 900')  # fully scraped
    (result,) = query(prometheus, BALANCED_ACCURACY)
    assert float(result["value"][1]) == pytest.approx(expected.balanced_accuracy.item(), rel=1e-9)
    recall = {int(r["metric"]["class"]): float(r["value"][1]) for r in query(prometheus, RECALL, C)}
    for k in range(4):
        assert recall[k] == pytest.approx(expected.recall[k].item(), rel=1e-9)
    assert np.isnan(recall[4])  # no support: 0 / 0
