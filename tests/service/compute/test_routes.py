"""``POST /compute``: summed statistics of several responses give the metrics of the whole.

The reference is eager ``focal`` on the concatenated batches, never the server's own numbers.
"""

# ruff: noqa: E501 (a table of bodies and their exact error messages, one per line)

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.service._inputs import batch, label_batch
from tests.service._requests import json_body
from tests.service.reference import (
    MULTILABEL_MANIFEST,
    NUM_BINS,
    assert_close,
    assert_error,
    assert_exact,
    eager,
    eager_multilabel,
    eager_ranking,
)
from tests.service.test_openapi import check, openapi, resolved


def summed(*responses: dict[str, Any]) -> dict[str, Any]:
    """The responses' statistics added field by field, as a client would."""
    names = responses[0]["statistics"]
    return {
        name: np.sum([np.asarray(r["statistics"][name]) for r in responses], axis=0).tolist()
        for name in names
    }


def scored(
    client: TestClient, logits: np.ndarray, labels: np.ndarray, **options: Any
) -> dict[str, Any]:
    response = client.post("/score", json=json_body(logits, labels, monitor=False, **options))
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def assert_metrics(got: dict[str, Any], want: dict[str, np.ndarray], per: str) -> None:
    """Scalars and per-class (or per-label) values of ``got`` equal the eager ones."""
    for name, value in got["metrics"].items():
        assert_close(value, want[name], f"metrics.{name}")
    for name, values in got[per].items():
        check = assert_exact if want[name].dtype.kind in "iu" else assert_close
        check([np.nan if v is None else v for v in values], want[name], f"{per}.{name}")


def test_multiclass_statistics_of_two_responses_give_the_whole_batch_s_metrics(
    client: TestClient,
) -> None:
    (a, a_labels), (b, b_labels) = batch(300, 5, seed=1, ignore=20), batch(200, 5, seed=2)
    body = {"statistics": summed(scored(client, a, a_labels), scored(client, b, b_labels))}
    response = client.post("/compute", json=body)
    assert response.status_code == 200, response.text
    got = response.json()
    assert (got["task"], got["num_classes"], got["model"]["kind"]) == ("multiclass", 5, "metrics")
    assert_metrics(
        got, eager(np.concatenate([a, b]), np.concatenate([a_labels, b_labels])), "per_class"
    )


def test_ranking_histograms_add_auroc_and_average_precision(client: TestClient) -> None:
    (a, a_labels), (b, b_labels) = batch(150, 4, seed=3), batch(250, 4, seed=4, ignore=9)
    responses = (
        scored(client, a, a_labels, ranking=True),
        scored(client, b, b_labels, ranking=True),
    )
    got = client.post("/compute", json={"statistics": summed(*responses)}).json()
    logits, labels = np.concatenate([a, b]), np.concatenate([a_labels, b_labels])
    assert_metrics(got, eager(logits, labels) | eager_ranking(logits, labels), "per_class")
    assert {"macro_auroc", "micro_average_precision"} <= set(got["metrics"])


def test_multilabel_statistics_of_two_responses_give_the_whole_batch_s_metrics(
    client: TestClient,
) -> None:
    (a, a_targets), (b, b_targets) = (
        label_batch(120, 6, seed=5),
        label_batch(80, 6, seed=6, ignore_fraction=0.2),
    )
    body = {
        "task": "multilabel",
        "statistics": summed(scored(client, a, a_targets), scored(client, b, b_targets)),
    }
    got = client.post("/compute", json=body).json()
    assert (got["task"], got["num_labels"], got["model"]["kind"]) == (
        "multilabel",
        6,
        "multilabel_metrics",
    )
    assert_metrics(
        got,
        eager_multilabel(np.concatenate([a, b]), np.concatenate([a_targets, b_targets])),
        "per_label",
    )


def test_binary_statistics_give_scalar_metrics(client: TestClient) -> None:
    logits, targets = label_batch(90, 1, seed=7)
    response = scored(client, logits.reshape(-1), targets.reshape(-1))
    got = client.post(
        "/compute", json={"task": "binary", "statistics": response["statistics"]}
    ).json()
    assert "per_label" not in got
    assert "num_labels" not in got
    assert got["metrics"] == response["metrics"]


def test_the_summary_s_statistics_give_the_summary_s_metrics(client: TestClient) -> None:
    logits, labels = batch(64, 3, seed=8)
    assert client.post("/score", json=json_body(logits, labels)).json()["monitored"]
    lifetime = client.get("/summary").json()["sources"]["default"]["lifetime"]
    got = client.post("/compute", json={"statistics": lifetime["statistics"]}).json()
    for name, value in got["metrics"].items():
        want = lifetime["metrics"][name]
        assert_close(value, np.asarray(np.nan if want is None else want), name)


def statistics_of(client: TestClient) -> dict[str, Any]:
    logits, labels = batch(10, 3, seed=9)
    statistics: dict[str, Any] = scored(client, logits, labels)["statistics"]
    return statistics


BIN = NUM_BINS
SCORE_BINS = MULTILABEL_MANIFEST["defaults"]["score_bins"]
BAD_BODIES = [
    pytest.param(lambda s: [s], "body: expected a JSON object with statistics (and task)", id="not_an_object"),
    pytest.param(lambda s: {"statistics": s, "gamma": 2.0}, "gamma: unknown field (accepted: task, statistics)", id="unknown_field"),
    pytest.param(lambda s: {"statistics": [1, 2]}, "statistics: expected an object of named arrays, got [1,2]", id="statistics_not_an_object"),
    pytest.param(lambda s: {"task": "regression", "statistics": s}, 'task: expected one of multiclass, multilabel, binary, got "regression"', id="unknown_task"),
    pytest.param(lambda s: {"statistics": {"bin_count": [0] * BIN}}, "task: not given, and the statistics have neither confusion_matrix (multiclass) nor true_positive (multilabel)", id="no_task_to_read"),
    pytest.param(lambda s: {"statistics": s | {"accuracy": 0.5}}, "statistics.accuracy: unknown for multiclass (expected: confusion_matrix, focal_loss_sum, cross_entropy_sum, alpha_sum, brier_sum, bin_count, bin_confidence_sum, bin_correct)", id="a_metric_is_not_a_statistic"),
    pytest.param(lambda s: {"statistics": {k: v for k, v in s.items() if k != "brier_sum"}}, "statistics.brier_sum: missing (required)", id="missing"),
    pytest.param(lambda s: {"statistics": s | {"confusion_matrix": [1, 2, 3]}}, "statistics.confusion_matrix: expected 2 dimensions, got shape [3]", id="wrong_dimensions"),
    pytest.param(lambda s: {"statistics": s | {"brier_sum": [0.0] * 4}}, "statistics.brier_sum: shape [4], but the others have C = 3", id="widths_disagree"),
    pytest.param(lambda s: {"statistics": s | {"bin_count": [0] * (BIN - 1)}}, f"statistics.bin_count: expected shape [{BIN}], got [{BIN - 1}]", id="other_bin_count"),
    pytest.param(lambda s: {"statistics": s | {"bin_count": [0.5] * BIN}}, "statistics.bin_count: expected integers (a count), got 0.5", id="fractional_count"),
    pytest.param(lambda s: {"statistics": s | {"focal_loss_sum": [1.0, -0.5, 0.0]}}, "statistics.focal_loss_sum: expected finite values >= 0 (every statistic is a sum of such terms)", id="negative_sum"),
    pytest.param(lambda s: {"statistics": s | {"focal_loss_sum": [1.0, "a", 0.0]}}, 'statistics.focal_loss_sum: expected a regular array of numbers, got [1.0,"a",0.0]', id="string_value"),
    pytest.param(lambda s: {"statistics": s | {"confusion_matrix": [[1, 2, 3], [1, 2]]}}, "statistics.confusion_matrix: expected a regular array of numbers", id="ragged"),
    pytest.param(lambda s: {"statistics": s | {"bin_count": [2**70] + [0] * (BIN - 1)}}, "statistics.bin_count: expected integers (a count), got 1.1805916207174113e+21", id="count_beyond_int64"),
    pytest.param(lambda s: {"statistics": {k: [v[0][:1]] if k == "confusion_matrix" else v[:1] if len(v) == 3 else v for k, v in s.items()}}, "statistics: 1 classes; expected 2 to 2048 for a multiclass task", id="one_class"),
    pytest.param(lambda s: {"task": "binary", "statistics": {"true_positive": [1, 2]}}, "statistics.false_positive: missing (required)", id="binary_missing"),
    pytest.param(lambda s: {"statistics": s | {"positive_histogram": [[0] * SCORE_BINS] * 3}}, "statistics.negative_histogram: missing (required)", id="half_the_ranking_histograms"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "message"), BAD_BODIES)
def test_bad_statistics_are_422_naming_the_field(
    client: TestClient, make: Any, message: str
) -> None:
    assert_error(client.post("/compute", json=make(statistics_of(client))), 422, message)


def test_binary_statistics_of_two_labels_are_422(client: TestClient) -> None:
    logits, targets = label_batch(20, 2, seed=10)
    statistics = scored(client, logits, targets)["statistics"]
    response = client.post("/compute", json={"task": "binary", "statistics": statistics})
    assert_error(response, 422, "statistics: 2 labels; expected 1 to 1 for a binary task")


def test_malformed_json_is_400_and_another_content_type_415(client: TestClient) -> None:
    response = client.post(
        "/compute", content=b'{"statistics": ', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "body: malformed JSON")
    response = client.post("/compute", content=b"x", headers={"content-type": "application/x-npz"})
    assert_error(
        response, 415, 'Content-Type: "application/x-npz" is not supported; use application/json'
    )


@pytest.mark.parametrize("settings", [{"max_classes": 4}], indirect=True)
def test_more_classes_than_focal_max_classes_is_422(client: TestClient) -> None:
    logits, labels = batch(30, 5, seed=11)
    scored_ = client.post("/score", json=json_body(logits, labels, monitor=False))
    assert scored_.status_code == 422  # /score refuses it too
    statistics = {
        k: v
        for k, v in eager(logits, labels).items()
        if k
        in (
            "confusion_matrix",
            "focal_loss_sum",
            "cross_entropy_sum",
            "alpha_sum",
            "brier_sum",
            "bin_count",
            "bin_confidence_sum",
            "bin_correct",
        )
    }
    body = {"statistics": {k: v.tolist() for k, v in statistics.items()}}
    assert_error(
        client.post("/compute", json=body),
        422,
        "statistics: 5 classes; expected 2 to 4 for a multiclass task (FOCAL_MAX_CLASSES)",
    )


@pytest.mark.parametrize(
    ("body", "task"),
    [
        pytest.param({"logits": [[2.0, 0.1], [0.3, 1.0]], "labels": [0, 1], "ranking": True}, "multiclass", id="multiclass_ranking"),
        pytest.param({"logits": [[2.0, -1.0, 0.5], [0.1, 0.2, -3.0]], "labels": [[1, 0, 1], [0, 1, 0]]}, "multilabel", id="multilabel"),
        pytest.param({"logits": [2.0, -1.0, 0.5], "labels": [1, 0, 1], "task": "binary"}, "binary", id="binary"),
    ],
)  # fmt: skip
def test_every_task_s_answer_matches_the_stated_schema(
    client: TestClient, body: dict[str, Any], task: str
) -> None:
    statistics = client.post("/score", json=body | {"monitor": False}).json()["statistics"]
    response = client.post("/compute", json={"task": task, "statistics": statistics})
    assert response.status_code == 200, response.text
    document = openapi(client)
    content = document["paths"]["/compute"]["post"]["responses"]["200"]["content"]
    check(resolved(document, content["application/json"]["schema"]), response.json())
    assert response.json()["model"]["format"] == "onnx"
