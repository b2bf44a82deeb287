"""The baselines compute what the graph computes, so that the comparisons are like for like."""

from __future__ import annotations

import io
from contextlib import ExitStack

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from bench.baselines.naive_service import app
from bench.baselines.sklearn_metrics import sklearn_metrics
from bench.baselines.sklearn_multilabel import sklearn_multilabel_metrics
from bench.baselines.tutorial import tutorial_focal_loss, tutorial_sigmoid_focal_loss
from bench.compute import evaluation_session, graph_feeds, shipped_session
from bench.data import make_batch
from bench.tasks import label_batch, multilabel_feeds
from bench.transport import MODEL, canned_server, v2_client, v2_inputs
from focal_eval.focal import sigmoid_focal_loss, softmax_focal_loss
from focal_eval.service.artifacts import default_artifact_dir, find_artifact
from focal_eval.service.testing import focal_server

SCALARS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "matthews_corrcoef")


@pytest.fixture(scope="module")
def graph_outputs():
    batch = make_batch(2000, 7, seed=3)
    names = find_artifact(default_artifact_dir(), "evaluation").output_names
    outputs = dict(zip(names, evaluation_session(1).run(None, graph_feeds(batch)), strict=True))
    return batch, outputs


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_tutorial_loss_equals_ours_per_sample(gamma):
    batch = make_batch(500, 5, seed=1)
    logits, labels = torch.from_numpy(batch.logits), torch.from_numpy(batch.labels)
    alpha = torch.linspace(0.5, 2.0, 5)
    ours = softmax_focal_loss(logits, labels, alpha, gamma, reduction="none")
    theirs = tutorial_focal_loss(logits, labels, alpha, gamma, reduction="none")
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-4)


def test_sklearn_metrics_equal_the_graphs(graph_outputs):
    batch, outputs = graph_outputs
    reference = sklearn_metrics(batch.logits, batch.labels)
    for name in SCALARS:
        assert reference[name] == pytest.approx(float(outputs[name]), abs=1e-9), name
    np.testing.assert_array_equal(reference["confusion_matrix"], outputs["confusion_matrix"])
    for name in ("precision", "recall", "f1"):
        np.testing.assert_allclose(reference[name], outputs[name], atol=1e-12)
    assert reference["log_loss"] == pytest.approx(float(outputs["mean_cross_entropy"]), rel=1e-5)
    assert reference["brier_score"] == pytest.approx(float(outputs["brier_score"]), rel=1e-5)


def test_naive_service_answers_json_and_npz_alike_and_like_the_graph(graph_outputs):
    batch, outputs = graph_outputs
    buffer = io.BytesIO()
    np.savez(buffer, logits=batch.logits, labels=batch.labels)
    with TestClient(app) as client:
        as_json = client.post(
            "/score", json={"logits": batch.logits.tolist(), "labels": batch.labels.tolist()}
        )
        as_npz = client.post("/score-npz", content=buffer.getvalue())
    assert as_json.status_code == as_npz.status_code == 200
    assert as_json.json()["metrics"] == pytest.approx(as_npz.json()["metrics"])
    metrics = as_json.json()["metrics"]
    for name in (*SCALARS, "mean_focal_loss", "mean_cross_entropy"):
        assert metrics[name] == pytest.approx(float(outputs[name]), rel=1e-5), name
    per_sample = as_json.json()["per_sample"]
    np.testing.assert_allclose(per_sample["focal_loss"], outputs["focal_loss"], atol=1e-5)
    np.testing.assert_array_equal(per_sample["prediction"], outputs["prediction"])


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_tutorial_sigmoid_loss_equals_ours(gamma):
    logits, targets = label_batch(300, 6)
    x, t = torch.from_numpy(logits), torch.from_numpy(targets).float()
    ours = sigmoid_focal_loss(x, t, 0.25, gamma, reduction="mean")
    torch.testing.assert_close(tutorial_sigmoid_focal_loss(x, t, 0.25, gamma), ours)


def test_sklearn_multilabel_metrics_equal_the_graphs():
    logits, targets = label_batch(3000, 5)
    graph = shipped_session("multilabel_evaluation")
    names = [output.name for output in graph.get_outputs()]
    outputs = dict(zip(names, graph.run(None, multilabel_feeds(logits, targets)), strict=True))
    reference = sklearn_multilabel_metrics(logits, targets)
    tp, fp = outputs["true_positive"], outputs["false_positive"]
    np.testing.assert_array_equal(reference["counts"][:, 1, 1], tp)
    np.testing.assert_array_equal(reference["counts"][:, 0, 1], fp)
    for name in ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "subset_accuracy"):
        assert reference[name] == pytest.approx(float(outputs[name]), abs=1e-12), name
    assert reference["hamming_loss"] == pytest.approx(float(outputs["hamming_loss"]), abs=1e-12)
    for name in ("mean_binary_cross_entropy", "brier_score"):
        assert reference[name] == pytest.approx(float(outputs[name]), rel=1e-5), name
    # exact AUROC / AP against the graph's binned ones: within the binning bound of the README
    for name in ("macro_auroc", "micro_auroc"):
        assert reference[name] == pytest.approx(float(outputs[name]), abs=2e-3), name
    for name in ("macro_average_precision", "micro_average_precision"):
        assert reference[name] == pytest.approx(float(outputs[name]), abs=2e-2), name


def test_tritonclient_reads_the_canned_reply_as_our_servers_answer():
    """The v2 client's floor: a server doing no work, whose reply parses as ours did."""
    inputs = v2_inputs(make_batch(500, 7, seed=5))
    with focal_server() as ours, ExitStack() as stack:
        expected = v2_client(ours, stack).infer(MODEL, inputs)
        canned = v2_client(canned_server(ours, inputs, stack), stack)
        replies = [canned.infer(MODEL, inputs) for _ in range(2)]  # one kept-alive connection
    outputs = [output["name"] for output in expected.get_response()["outputs"]]
    assert "focal_loss" in outputs
    for reply in replies:
        assert [output["name"] for output in reply.get_response()["outputs"]] == outputs
        for name in outputs:
            np.testing.assert_array_equal(reply.as_numpy(name), expected.as_numpy(name))
