"""Requests the route tests send, and what they read back: bodies, posts, /metrics samples."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import orjson
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

LOGITS = [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]
LABELS = [0, 2]
NPZ = {"content-type": "application/x-npz"}
JSON = {"content-type": "application/json"}
MISSING = object()  # document(field=MISSING) drops the field

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def document(**changes: Any) -> dict[str, Any]:
    """A valid 2 x 3 ``/score`` request with ``changes`` applied (``MISSING`` drops a field)."""
    body: dict[str, Any] = {"logits": LOGITS, "labels": LABELS}
    body.update(changes)
    return {name: value for name, value in body.items() if value is not MISSING}


def json_body(logits: np.ndarray, labels: np.ndarray, **options: Any) -> dict[str, Any]:
    """A ``/score`` JSON request for the arrays, with ``options``."""
    return {"logits": logits.tolist(), "labels": labels.tolist(), **options}


def npz_body(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    """An ``np.savez`` (or ``np.savez_compressed``) archive of ``arrays``."""
    buffer = io.BytesIO()
    if compressed:
        np.savez_compressed(buffer, allow_pickle=True, **arrays)
    else:
        np.savez(buffer, allow_pickle=True, **arrays)
    return buffer.getvalue()


def score_bytes(logits: np.ndarray, labels: np.ndarray, **extra: Any) -> bytes:
    """A ``/score`` JSON body without the per-sample arrays in the answer (monitoring tests)."""
    body = {"logits": logits, "labels": labels, "per_sample": False, **extra}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def post(client: TestClient, logits: np.ndarray, labels: np.ndarray, **extra: Any) -> Any:
    """``POST /score`` of :func:`score_bytes`, which must be answered 200; the answer."""
    response = client.post("/score", content=score_bytes(logits, labels, **extra), headers=JSON)
    assert response.status_code == 200, response.text
    return response.json()


def scrape(client: TestClient) -> Samples:
    """Every sample of /metrics, by name and sorted labels."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
