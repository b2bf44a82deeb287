"""``/score`` for every task: multi-label, binary, probabilities, multi-class ranking.

Every number is checked against eager focal/ on the same arrays (``update_multilabel``,
``update_ranking``), JSON and npz alike; every bad value of the new paths has its exact 422.
"""

# ruff: noqa: E501 (tables of requests and their exact error messages, one per line)

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

import focal_eval.service.core.scoring
from focal_eval.service.app import create_app
from focal_eval.service.artifacts import default_artifact_dir
from focal_eval.service.core.probabilities import logits_of
from focal_eval.service.core.settings import Settings
from tests.service._inputs import IGNORE_INDEX, batch, label_batch
from tests.service._requests import NPZ, json_body, npz_body
from tests.service.reference import (
    MULTILABEL_DEFAULTS,
    MULTILABEL_MANIFEST,
    assert_close,
    assert_error,
    assert_exact,
    assert_outputs,
    assert_score_response,
    eager,
    eager_multilabel,
    eager_ranking,
)

AVERAGED = ("macro_", "micro_", "weighted_", "samples_")


def assert_multilabel_response(got: dict[str, Any], want: dict[str, np.ndarray]) -> None:
    """A multi-label response: every scalar, per-label value, statistic and per-sample array."""
    assert got["task"] == "multilabel"
    groups = {o["name"]: (o["group"], len(o["shape"])) for o in MULTILABEL_MANIFEST["outputs"]}
    assert set(got["metrics"]) == {n for n, g in groups.items() if g == ("metrics", 0)}
    assert set(got["per_label"]) == {n for n, g in groups.items() if g == ("metrics", 1)}
    assert set(got["statistics"]) == {n for n, g in groups.items() if g[0] == "statistics"}
    assert_outputs(got["metrics"], want, "metrics")
    assert_outputs(got["per_label"], want, "per_label")
    assert_outputs(got["statistics"], want, "statistics")
    assert_outputs(got["per_sample"], want, "per_sample")
    assert got["num_labels"] == want["true_positive"].shape[0]


def test_multilabel_json_equals_eager(client: TestClient) -> None:
    logits, targets = label_batch(60, 5, seed=1, ignore_fraction=0.1)
    got = client.post("/score", json=json_body(logits, targets)).json()
    assert_multilabel_response(got, eager_multilabel(logits, targets))
    assert got["valid"] == int(np.count_nonzero(targets != IGNORE_INDEX))
    assert got["parameters"] == {
        "alpha": MULTILABEL_DEFAULTS["alpha"],
        "gamma": MULTILABEL_DEFAULTS["gamma"],
        "threshold": MULTILABEL_DEFAULTS["threshold"],
        "ignore_index": IGNORE_INDEX,
    }


def test_multilabel_npz_with_its_parameters_in_the_query_equals_eager(client: TestClient) -> None:
    logits, targets = label_batch(40, 3, seed=2)
    query = {"threshold": "0.3", "gamma": "0.5"}
    body = npz_body(
        logits=logits, labels=targets.astype(np.uint8), alpha=np.array(-1.0, np.float32)
    )
    got = client.post("/score", content=body, params=query, headers=NPZ).json()
    assert_multilabel_response(
        got, eager_multilabel(logits, targets, alpha=-1.0, gamma=0.5, threshold=0.3)
    )


def test_segmentation_shaped_multilabel_is_flattened_with_labels_last(client: TestClient) -> None:
    logits, targets = label_batch(2 * 4 * 3, 5, seed=3)
    shaped_logits = logits.reshape(2, 4, 3, 5).transpose(0, 3, 1, 2)  # (N, L, d1, d2)
    shaped_targets = targets.reshape(2, 4, 3, 5).transpose(0, 3, 1, 2)
    got = client.post("/score", json=json_body(shaped_logits, shaped_targets)).json()
    assert got["shape"] == [2, 5, 4, 3]
    assert_multilabel_response(got, eager_multilabel(logits, targets))


@pytest.mark.parametrize("rows", [7, 64])
def test_chunked_multilabel_scoring_equals_one_run(
    monkeypatch: pytest.MonkeyPatch, client: TestClient, rows: int
) -> None:
    monkeypatch.setattr(
        focal_eval.service.core.scoring, "chunk_rows", lambda width, fused=False: rows
    )
    logits, targets = label_batch(300, 4, seed=4, ignore_fraction=0.2)
    got = client.post("/score", json=json_body(logits, targets)).json()
    assert_multilabel_response(got, eager_multilabel(logits, targets))


@pytest.mark.parametrize("column", [False, True], ids=["flat", "column"])
def test_binary_reports_its_one_label_as_scalars(client: TestClient, column: bool) -> None:
    logits, targets = label_batch(80, 1, seed=5, ignore_fraction=0.1)
    sent = logits if column else logits[:, 0]
    got = client.post("/score", json=json_body(sent, targets[:, 0])).json()
    want = eager_multilabel(logits, targets)
    assert got["task"] == "binary"
    assert got["shape"] == [80]
    assert "num_labels" not in got
    assert "per_label" not in got
    metrics = [o for o in MULTILABEL_MANIFEST["outputs"] if o["group"] == "metrics"]
    assert set(got["metrics"]) == {
        o["name"] for o in metrics if o["shape"] or not o["name"].startswith(AVERAGED)
    }
    for name in ("precision", "recall", "f1", "auroc", "average_precision"):
        assert_close(got["metrics"][name], want[name][0], f"metrics.{name}")
    assert got["metrics"]["support"] == int(want["support"][0])
    for name in ("expected_calibration_error", "mean_focal_loss", "hamming_loss"):
        assert_close(got["metrics"][name], want[name], f"metrics.{name}")


def test_a_one_logit_model_may_be_read_as_multilabel(client: TestClient) -> None:
    logits, targets = label_batch(30, 1, seed=6)
    body = json_body(logits, targets, task="multilabel")
    got = client.post("/score", json=body).json()
    assert_multilabel_response(got, eager_multilabel(logits, targets))


def test_multiclass_probabilities_score_as_their_logs(client: TestClient) -> None:
    logits, labels = batch(50, 4, seed=7)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = shifted / shifted.sum(axis=1, keepdims=True)
    p[0] = [1.0, 0.0, 0.0, 0.0]  # a confident model's exact 0 and 1
    labels[0] = 1
    got = client.post("/score", json=json_body(p, labels, inputs="probabilities")).json()
    assert_score_response(got, eager(logits_of("multiclass", p), labels))
    assert np.isfinite(got["per_sample"]["focal_loss"][0])


def test_multilabel_probabilities_score_as_their_logits(client: TestClient) -> None:
    logits, targets = label_batch(50, 3, seed=8)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    p[0] = [0.0, 1.0, 0.5]
    got = client.post("/score", json=json_body(p, targets, inputs="probabilities")).json()
    assert_multilabel_response(got, eager_multilabel(logits_of("multilabel", p), targets))


def test_multiclass_ranking_is_opt_in_and_equals_eager(client: TestClient) -> None:
    assert_ranking_as_eager(client)


@pytest.fixture
def side_by_side(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> Iterator[TestClient]:
    """The portable path (no fused graphs), in chunks of 16 rows, two at a time."""
    monkeypatch.setattr(
        focal_eval.service.core.scoring, "chunk_rows", lambda width, fused=False: 16
    )
    with TestClient(create_app(make_settings(fast_path=False, threads=2))) as client:
        yield client


def test_side_by_side_chunks_score_multilabel_and_ranking_as_eager(
    side_by_side: TestClient,
) -> None:
    logits, targets = label_batch(300, 4, seed=4, ignore_fraction=0.2)
    got = side_by_side.post("/score", json=json_body(logits, targets)).json()
    assert_multilabel_response(got, eager_multilabel(logits, targets))
    assert_ranking_as_eager(side_by_side)


def assert_ranking_as_eager(client: TestClient) -> None:
    """A 90 x 4 batch: no ranking unless asked for; with it, eager's numbers."""
    logits, labels = batch(90, 4, seed=9, ignore=5)
    plain = client.post("/score", json=json_body(logits, labels)).json()
    assert "auroc" not in plain["per_class"]
    assert "positive_histogram" not in plain["statistics"]
    got = client.post("/score", json=json_body(logits, labels, ranking=True)).json()
    want = eager_ranking(logits, labels)
    for name in ("macro_auroc", "micro_auroc", "macro_average_precision"):
        assert_close(got["metrics"][name], want[name], f"metrics.{name}")
    for name in ("auroc", "average_precision"):
        assert_close(got["per_class"][name], want[name], f"per_class.{name}")
    for name in ("positive_histogram", "negative_histogram"):
        assert_exact(got["statistics"][name], want[name], f"statistics.{name}")
    assert_score_response(
        {
            **got,
            "metrics": {k: v for k, v in got["metrics"].items() if k not in want},
            "per_class": {k: v for k, v in got["per_class"].items() if k not in want},
            "statistics": {k: v for k, v in got["statistics"].items() if k not in want},
        },
        eager(logits, labels),
    )


def test_multilabel_statistics_of_two_responses_add_up_to_the_whole(client: TestClient) -> None:
    logits, targets = label_batch(100, 4, seed=10, ignore_fraction=0.1)
    halves = [
        client.post("/score", json=json_body(logits[part], targets[part])).json()["statistics"]
        for part in (slice(0, 37), slice(37, None))
    ]
    whole = eager_multilabel(logits, targets)
    for name in halves[0]:
        summed = np.asarray(halves[0][name]) + np.asarray(halves[1][name])
        if whole[name].dtype.kind in "iu":
            assert_exact(summed, whole[name], name)
        else:
            assert_close(summed, whole[name], name)


LABELS_2X3 = [[1.0, -1.0, 0.5], [0.0, 2.0, -3.0]]
TARGETS_2X3 = [[1, 0, 1], [0, 1, 0]]


def multilabel(**changes: Any) -> dict[str, Any]:
    return {"logits": LABELS_2X3, "labels": TARGETS_2X3, **changes}


INVALID = [
    pytest.param(multilabel(labels=[[1, 0, 2], [0, 1, 0]]), "labels: 1 values are neither 0, 1 nor ignore_index (-100); first 2 at row 0, label 2", id="target_2"),
    pytest.param(multilabel(labels=[[1, 0, -1], [0, 1, 0]], ignore_index=255), "labels: 1 values are neither 0, 1 nor ignore_index (255); first -1 at row 0, label 2", id="target_minus_1"),
    pytest.param(multilabel(labels=[[1, 0], [0, 1]]), "labels: expected shape [2, 3] to match logits [2, 3], got [2, 2]", id="shape_mismatch"),
    pytest.param(multilabel(logits=[[], []], labels=[[], []]), "logits: expected at least 1 labels (dimension 1), got 0", id="no_labels"),
    pytest.param(multilabel(threshold=0.0), "threshold: expected a number in (0, 1), got 0.0", id="threshold_0"),
    pytest.param(multilabel(threshold=1), "threshold: expected a number in (0, 1), got 1", id="threshold_1"),
    pytest.param(multilabel(threshold="half"), 'threshold: expected a number, got "half"', id="threshold_string"),
    pytest.param(multilabel(alpha=[0.25, 0.25, 0.25]), "alpha: expected one number for multilabel and binary batches (the weight of positives), got [0.25,0.25,0.25]", id="alpha_per_label"),
    pytest.param({"logits": [[0.0]], "labels": [[]]}, "labels: expected one label a sample, shape [1], to match logits [1, 1]; got [1, 0]", id="binary_labels_of_no_columns"),
    pytest.param(multilabel(alpha=1.5), "alpha: expected a finite number <= 1 (negative: no weighting), got 1.5", id="alpha_above_1"),
    pytest.param(multilabel(ranking=True), "ranking: multilabel batches always carry AUROC and average precision; remove it", id="ranking_of_labels"),
    pytest.param(multilabel(inputs="probabilities"), "logits: probabilities must lie in [0, 1]; -1.0 at [0, 1]", id="probabilities_outside"),
    pytest.param(multilabel(inputs="scores"), 'inputs: expected one of logits, probabilities, got "scores"', id="unknown_inputs"),
    pytest.param(multilabel(task="regression"), 'task: expected one of multiclass, multilabel, binary, got "regression"', id="unknown_task"),
    pytest.param({"logits": [[0.7, 0.3], [0.6, 0.3]], "labels": [0, 1], "inputs": "probabilities"}, "logits: probabilities of a row must sum to 1 (within 0.001); row 1 sums to 0.9", id="row_sum"),
    pytest.param({"logits": [[1.0, 2.0], [0.5, 0.1]], "labels": [0, 1], "threshold": 0.5}, "threshold: multiclass batches are scored by their argmax; remove it", id="threshold_of_classes"),
    pytest.param({"logits": [[1.0, 2.0], [0.5, 0.1]], "labels": [0, 1], "alpha": 0.25}, "alpha: expected 2 values (one per class) for a multiclass batch, got 0.25", id="one_alpha_for_classes"),
    pytest.param({"logits": [[1.0, 2.0], [0.5, 0.1]], "labels": [0, 1], "ranking": "yes"}, 'ranking: expected true or false, got "yes"', id="ranking_not_bool"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), INVALID)
def test_bad_values_of_the_new_paths_are_422_naming_the_field(
    client: TestClient, body: dict[str, Any], message: str
) -> None:
    response = client.post("/score", json=body)
    assert_error(response, 422, message)
    assert response.json()["error"] == message


def test_a_server_without_multilabel_graphs_says_so(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    directory = tmp_path / "artifacts"
    directory.mkdir()
    for name in ("evaluation.onnx", "metrics.onnx"):
        for suffix in ("", ".manifest.json"):
            shutil.copy(default_artifact_dir() / (name + suffix), directory)
    with TestClient(create_app(make_settings(artifact_dir=directory))) as client:
        response = client.post("/score", json=multilabel())
        ranked = client.post(
            "/score", json={"logits": LABELS_2X3, "labels": [0, 1], "ranking": True}
        )
    assert_error(
        response,
        422,
        "task: this server has no multilabel graphs (FOCAL_ARTIFACT_DIR holds no"
        " multilabel_evaluation and multilabel_metrics artifacts)",
    )
    assert_error(
        ranked,
        422,
        "ranking: this server has no ranking graphs (FOCAL_ARTIFACT_DIR holds no ranking and"
        " ranking_metrics artifacts)",
    )
