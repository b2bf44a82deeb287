"""A real ``focal serve`` on 127.0.0.1, real clients, every number against eager focal/."""

from __future__ import annotations

import gzip
import io
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import torch
import tritonclient.http as triton

from focal_eval.focal import Metrics, PerSample, Statistics, compute, update
from tests.service._inputs import IGNORE_INDEX, batch, class_weights

C = 7


def weighted_batch(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, labels (a tenth ignored) and a per-class alpha."""
    rng = np.random.default_rng(seed)
    logits, labels = batch(n, C, rng, scale=3.0, ignore_fraction=0.1)
    return logits, labels, class_weights(rng, C)


def eager(
    logits: np.ndarray, labels: np.ndarray, alpha: np.ndarray, gamma: float
) -> dict[str, np.ndarray]:
    """Every graph output by name, from eager focal/ on the same arrays."""
    per_sample, statistics = update(
        torch.from_numpy(logits), torch.from_numpy(labels), torch.from_numpy(alpha), gamma
    )
    metrics = compute(statistics)
    names = PerSample._fields + Statistics._fields + Metrics._fields
    return {n: t.numpy() for n, t in zip(names, (*per_sample, *statistics, *metrics), strict=True)}


def assert_close(name: str, got: Any, want: np.ndarray) -> None:
    got = np.asarray(got, dtype=want.dtype if want.dtype.kind in "iu" else np.float64)
    if want.dtype.kind in "iu":
        np.testing.assert_array_equal(got, want, err_msg=name)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)


def check_score_response(document: dict[str, Any], want: dict[str, np.ndarray]) -> None:
    for name, value in document["metrics"].items():
        assert_close(name, value, want[name])
    for name, values in document["per_class"].items():
        assert_close(name, values, want[name])
    assert set(document["statistics"]) >= {"confusion_matrix"}
    for name, values in document["statistics"].items():
        assert_close(name, values, want[name])
    for name, values in document["per_sample"].items():
        assert_close(name, values, want[name])


def test_json_score_over_http_matches_eager(server_url: str) -> None:
    logits, labels, alpha = weighted_batch()
    body = orjson.dumps(
        {"logits": logits, "labels": labels, "alpha": alpha, "gamma": 1.5},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    response = httpx.post(
        f"{server_url}/score",
        content=gzip.compress(body),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["n"] == 300
    assert document["valid"] == int((labels != IGNORE_INDEX).sum())
    check_score_response(document, eager(logits, labels, alpha, 1.5))


def test_npz_score_over_http_matches_eager(server_url: str) -> None:
    logits, labels, alpha = weighted_batch(seed=1)
    archive = io.BytesIO()
    np.savez_compressed(
        archive, logits=logits.astype(np.float64), labels=labels.astype(np.int32), alpha=alpha
    )
    response = httpx.post(
        f"{server_url}/score",
        params={"gamma": "0.5"},
        content=archive.getvalue(),
        headers={"content-type": "application/x-npz"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    check_score_response(response.json(), eager(logits, labels, alpha, 0.5))


@pytest.mark.parametrize(
    "binary", [pytest.param(True, id="binary"), pytest.param(False, id="json")]
)
def test_tritonclient_infer_matches_eager(server_url: str, binary: bool) -> None:
    logits, labels, alpha = weighted_batch(seed=2)
    client = triton.InferenceServerClient(server_url.removeprefix("http://"), network_timeout=30.0)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("focal-eval")
        metadata = client.get_model_metadata("focal-eval")
        assert [i["name"] for i in metadata["inputs"]] == [
            "logits",
            "labels",
            "alpha",
            "gamma",
            "ignore_index",
        ]
        inputs = []
        for name, array, datatype in [
            ("logits", logits, "FP32"),
            ("labels", labels, "INT64"),
            ("alpha", alpha, "FP32"),
            ("gamma", np.array([2.0], np.float32), "FP32"),
        ]:
            tensor = triton.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array, binary_data=binary)
            inputs.append(tensor)
        wanted = [
            "focal_loss",
            "prediction",
            "confusion_matrix",
            "balanced_accuracy",
            "f1",
            "bin_count",
        ]
        outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in wanted]
        result = client.infer(
            "focal-eval", inputs, outputs=outputs, request_compression_algorithm="gzip"
        )
        want = eager(logits, labels, alpha, 2.0)
        for name in wanted:
            assert_close(name, result.as_numpy(name), want[name])
        everything = client.infer("focal-eval", inputs[:2])  # no outputs named: all, binary
        defaults = eager(logits, labels, np.ones(C, np.float32), 2.0)  # alpha and gamma omitted
        for name, expected in defaults.items():
            assert_close(name, everything.as_numpy(name), expected)
    finally:
        client.close()


def test_bad_input_over_http_is_a_clear_4xx(server_url: str) -> None:
    response = httpx.post(
        f"{server_url}/score",
        content=b'{"logits": [[0.0, 1.0], [2.0, 0.0]], "labels": [0, -1]}',
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 422
    message = (
        "labels: 1 values outside [0, 2) that are not ignore_index (-100); first -1 at index 1"
    )
    assert response.json() == {"error": message}
