"""``evaluate.client.score`` through a real ``focal serve`` on 127.0.0.1.

Every number against scikit-learn or float64 formulas on the whole arrays, never against the
client's own output; the server's own counters (``/summary``, ``/metrics``) say what reached it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)

from focal_eval.evaluate.client import Evaluation, ServerError, score
from focal_eval.service.testing import REPO, Server, focal_server, free_port
from tests.service._inputs import IGNORE_INDEX, batch, benchmark_batch, class_weights, label_batch

TIMEOUT_S = 60.0
ARTIFACTS = REPO / "service" / "artifacts"
MULTILABEL_MANIFEST = json.loads(
    (ARTIFACTS / "multilabel_evaluation.onnx.manifest.json").read_text()
)
SCORE_BINS = int(MULTILABEL_MANIFEST["defaults"]["score_bins"])
MODEL_ID = hashlib.sha256((ARTIFACTS / "evaluation.onnx").read_bytes()).hexdigest()
MULTICLASS = (3000, 7)
SMALL_CHUNKS = 25_000  # about 680 rows of 7 classes: 5 chunks of the 3,000


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """One server for the module; a 64 MiB budget, so that a held response can fill it."""
    with focal_server({"FOCAL_MEMORY_LIMIT": "64Mi"}) as server:
        yield server


# --- references ---------------------------------------------------------------------------------
def focal_losses(
    logits: np.ndarray, labels: np.ndarray, alpha: np.ndarray, gamma: float
) -> tuple[np.ndarray, np.ndarray]:
    """``-alpha_t (1 - p_t)^gamma log p_t`` and ``alpha_t`` in float64, rows not ignored."""
    valid = labels != IGNORE_INDEX
    z = logits[valid].astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    log_pt = log_p[np.arange(len(z)), labels[valid]]
    alpha_t = alpha.astype(np.float64)[labels[valid]]
    return -alpha_t * (1 - np.exp(log_pt)) ** gamma * log_pt, alpha_t


def auroc_binning_bound(scores: np.ndarray, targets: np.ndarray) -> float:
    """README: ``|AUROC_binned - AUROC| <= (1/2) sum_h P_h N_h / (P N)``, bins ``floor(p H)``."""
    bins = np.minimum(np.floor(scores * SCORE_BINS), SCORE_BINS - 1).astype(np.int64)
    positives = np.bincount(bins[targets == 1], minlength=SCORE_BINS)
    negatives = np.bincount(bins[targets == 0], minlength=SCORE_BINS)
    return 0.5 * float(positives @ negatives) / float(positives.sum() * negatives.sum())


# --- what reached the server --------------------------------------------------------------------
def default_samples(server: Server) -> int:
    """Lifetime samples of the monitor's default source (0 before its first batch)."""
    summary = httpx.get(server.url + "/summary", timeout=TIMEOUT_S).json()
    assert set(summary) == {"model_id", "sources"}, summary
    source = summary["sources"].get("default")
    return 0 if source is None else int(source["lifetime"]["samples"])


def responses(server: Server, route: str, status: int) -> float:
    text = httpx.get(server.url + "/metrics", timeout=TIMEOUT_S).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "focal_eval_requests_total"
        and sample.labels == {"route": route, "method": "POST", "status": str(status)}
    )


# --- 1, 2: the metrics of the whole arrays ------------------------------------------------------
def test_multiclass_chunks_merge_to_the_metrics_of_the_whole_arrays(server: Server) -> None:
    rng = np.random.default_rng(1)
    logits, labels = batch(*MULTICLASS, seed=rng, ignore_fraction=0.1)
    alpha, gamma = class_weights(rng, MULTICLASS[1]), 1.5
    evaluation = score(
        server.url, logits, labels, alpha=alpha, gamma=gamma, max_chunk_bytes=SMALL_CHUNKS
    )
    valid = labels != IGNORE_INDEX
    truth, predicted = labels[valid], logits[valid].argmax(axis=1)
    assert evaluation.chunks >= 4
    assert (evaluation.task, evaluation.rows, evaluation.model_id) == (
        "multiclass",
        MULTICLASS[0],
        MODEL_ID,
    )
    np.testing.assert_array_equal(
        evaluation.statistics["confusion_matrix"],
        confusion_matrix(truth, predicted, labels=range(MULTICLASS[1])),
        strict=False,
    )
    assert evaluation.per["support"] == np.bincount(truth, minlength=MULTICLASS[1]).tolist()
    metrics = evaluation.metrics
    assert metrics["accuracy"] == pytest.approx(accuracy_score(truth, predicted), rel=1e-12)
    assert metrics["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(truth, predicted), rel=1e-12
    )
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(truth, predicted, average="macro"), rel=1e-12
    )
    losses, alpha_t = focal_losses(logits, labels, alpha, gamma)
    assert metrics["mean_focal_loss"] == pytest.approx(losses.mean(), rel=1e-5)
    assert metrics["alpha_weighted_focal_loss"] == pytest.approx(
        losses.sum() / alpha_t.sum(), rel=1e-5
    )


def test_multilabel_chunks_merge_to_the_metrics_of_the_whole_arrays(server: Server) -> None:
    logits, targets = label_batch(2000, 5, seed=2)
    evaluation = score(server.url, logits, targets, max_chunk_bytes=40_000)
    predicted = (logits > 0).astype(np.int64)  # sigmoid(z) >= 0.5, the default threshold
    assert evaluation.chunks >= 3
    assert (evaluation.task, evaluation.rows) == ("multilabel", 2000)
    metrics = evaluation.metrics
    for average in ("micro", "macro"):
        assert metrics[f"{average}_f1"] == pytest.approx(
            f1_score(targets, predicted, average=average), rel=1e-12
        )
    assert metrics["subset_accuracy"] == pytest.approx(
        accuracy_score(targets, predicted), rel=1e-12
    )
    scores = 1 / (1 + np.exp(-logits.astype(np.float64)))
    for j, auroc in enumerate(evaluation.per["auroc"]):
        exact = roc_auc_score(targets[:, j], scores[:, j])
        bound = auroc_binning_bound(scores[:, j], targets[:, j])
        assert abs(auroc - exact) <= min(bound + 1e-12, 2e-3), (j, auroc, exact, bound)


# --- 3: batch jobs stay out of the monitor ------------------------------------------------------
def test_rows_stay_out_of_the_monitor_unless_asked(server: Server) -> None:
    logits, labels = batch(500, 4, seed=3)
    before = default_samples(server)
    score(server.url, logits, labels, max_chunk_bytes=SMALL_CHUNKS)
    assert default_samples(server) == before
    score(server.url, logits, labels, max_chunk_bytes=SMALL_CHUNKS, monitor=True)  # the control
    assert default_samples(server) == before + 500


# --- 4: 503 (memory budget busy) is retried after Retry-After -----------------------------------
HOLD_S = 1.0
HELD = (1_000_000, 2)  # its per-sample JSON (~50 MB) is far more than socket buffers hold
# One chunk (27 MiB body) of about 49 MiB of work: fits the 64 MiB budget, not beside the held
# response's 25 MiB; and its /compute is small (a 900-class one would not fit the budget)
BIG = (400_000, 16)


def hold_budget(server: Server) -> socket.socket:
    """A request whose large response streams to a socket that reads none of it (yet)."""
    held = benchmark_batch(*HELD)
    buffer = io.BytesIO()
    np.savez(buffer, logits=held.logits, labels=held.labels)
    body = buffer.getvalue()
    head = (
        f"POST /score?monitor=false HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {len(body)}\r\n"
        "content-type: application/x-npz\r\nconnection: close\r\n\r\n"
    )
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S)
    sock.sendall(head.encode() + body)
    while len(status := sock.recv(12, socket.MSG_PEEK)) < 12:  # the status line, left unread
        time.sleep(0.01)
    assert status == b"HTTP/1.1 200", status
    return sock


def test_busy_budget_is_retried_after_retry_after(server: Server) -> None:
    logits, labels = batch(*BIG, seed=4)

    def timed() -> tuple[Evaluation, float]:
        return score(server.url, logits, labels), time.monotonic()

    refused_before = responses(server, "/score", 503)
    sock = hold_budget(server)
    try:
        with pytest.raises(ServerError) as refused:
            score(server.url, logits, labels, retries=0)
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            waiting = pool.submit(timed)
            time.sleep(HOLD_S)
            while sock.recv(1 << 20):  # the held response, read: its budget released
                pass
            released = time.monotonic()
            evaluation, finished = waiting.result(timeout=TIMEOUT_S)
    finally:
        sock.close()
    assert refused.value.status == 503
    assert str(refused.value).startswith(
        f"rows 0-{BIG[0] - 1}: 503 server: batch (N={BIG[0]}, C={BIG[1]}) needs about"
    ), str(refused.value)
    assert finished > released >= started + HOLD_S  # it waited for the budget, not failed
    assert responses(server, "/score", 503) - refused_before >= 2  # retries=0's, and a retried one
    assert evaluation.rows == BIG[0]
    assert evaluation.metrics["accuracy"] == pytest.approx(
        accuracy_score(labels, logits.argmax(axis=1)), rel=1e-12
    )


# --- 5: errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("max_chunk_bytes", "chunks"),
    [
        pytest.param(32 * 2**20, "one", id="one-chunk"),
        pytest.param(SMALL_CHUNKS, "many", id="chunks"),
    ],
)
def test_label_out_of_range_is_422_naming_the_rows(
    server: Server, max_chunk_bytes: int, chunks: str
) -> None:
    logits, labels = batch(*MULTICLASS, seed=5)
    bad = 2345
    labels[bad] = MULTICLASS[1]
    with pytest.raises(ServerError) as raised:
        score(server.url, logits, labels, max_chunk_bytes=max_chunk_bytes)
    found = re.fullmatch(r"rows (\d+)-(\d+): .*", str(raised.value))
    assert found, str(raised.value)
    start, stop = int(found[1]), int(found[2])
    if chunks == "one":
        assert (start, stop) == (0, MULTICLASS[0] - 1)
    else:
        assert 0 < start <= bad <= stop
    message = (
        f"labels: 1 values outside [0, {MULTICLASS[1]}) that are not ignore_index"
        f" ({IGNORE_INDEX}); first {MULTICLASS[1]} at index {bad - start}"
    )
    assert raised.value.status == 422
    assert raised.value.message == message
    assert str(raised.value) == f"rows {start}-{stop}: 422 {message}"


UNREACHABLE = "http://127.0.0.1:9"  # checks come first: nothing is sent


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            {"logits": np.zeros((10, 3), np.float32), "labels": np.zeros(9, np.int64)},
            "Expected `logits` and `labels` to have the same first dimension, but got 10 and 9",
            id="first-dimension",
        ),
        pytest.param(
            {"max_chunk_bytes": 1},
            "Expected argument `max_chunk_bytes` to fit at least one row (36 bytes of logits and"
            " labels) and the .npz framing, but got 1",
            id="max_chunk_bytes",
        ),
        pytest.param(
            {"retries": -1},
            "Expected argument `retries` to be an int >= 0, but got -1",
            id="retries",
        ),
    ],
)
def test_bad_arguments_are_value_errors(arguments: dict[str, Any], message: str) -> None:
    given: dict[str, Any] = {
        "logits": np.zeros((10, 7), np.float32),
        "labels": np.zeros(10, np.int64),
    }
    given |= arguments
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        score(UNREACHABLE, **given)


def test_unreachable_server_fails_promptly_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    logits, labels = batch(10, 3)
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=re.escape(f"rows 0-9: POST {url}/score failed")):
        score(url, logits, labels)
    assert time.monotonic() - started < 5


def test_token_is_sent_as_a_bearer_token() -> None:
    token = "client-test-token"
    logits, labels = batch(10, 3, seed=6)
    with focal_server({"FOCAL_AUTH_TOKEN": token}) as guarded:
        evaluation = score(guarded.url, logits, labels, token=token)
        with pytest.raises(ServerError) as refused:
            score(guarded.url, logits, labels, token="wrong")
    assert evaluation.rows == 10
    assert str(refused.value) == "rows 0-9: 401 Authorization: missing or invalid bearer token"
