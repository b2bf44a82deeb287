"""A real Prometheus scrapes a real server; PromQL over the counters equals focal/'s metrics."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from focal_eval.focal import compute, update
from focal_eval.service.testing import focal_server
from tests.prometheus import post_score, prometheus, query
from tests.service._inputs import batch

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
        for rows in (slice(0, 300), slice(300, 700), slice(700, 900)):
            post_score(server.url, logits[rows], labels[rows])
        yield server.url, logits, labels


@pytest.fixture(scope="module")
def scraping(
    scored: tuple[str, np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Prometheus on 127.0.0.1 scraping the server every second, with its own config and data."""
    target = scored[0].removeprefix("http://")
    with prometheus([target], tmp_path_factory.mktemp("prometheus")) as url:
        yield url


def test_promql_balanced_accuracy_equals_focal(
    scored: tuple[str, np.ndarray, np.ndarray], scraping: str
) -> None:
    _, logits, labels = scored
    expected = compute(update(torch.from_numpy(logits), torch.from_numpy(labels))[1])
    query(scraping, 'focal_eval_samples_total{source="default"} == 900')  # fully scraped
    (result,) = query(scraping, BALANCED_ACCURACY)
    assert float(result["value"][1]) == pytest.approx(expected.balanced_accuracy.item(), rel=1e-9)
    recall = {int(r["metric"]["class"]): float(r["value"][1]) for r in query(scraping, RECALL, C)}
    for k in range(4):
        assert recall[k] == pytest.approx(expected.recall[k].item(), rel=1e-9)
    assert np.isnan(recall[4])  # no support: 0 / 0
