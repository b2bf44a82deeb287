"""The inputs every report test draws: real results and the logits and labels behind them.

Results are what users feed ``focal report``: ``/score`` and ``/summary`` responses of the
app (in process, lifespan run) and ``focal evaluate`` results of a Parquet file, written as
JSON. Expected values never come from here: tests compute them from ``logits`` and
``labels`` with numpy and scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi.testclient import TestClient

GAMMA = 2.0  # the shipped graphs' default
ALPHA = 0.25  # multi-label and binary default weight of positives
SCORE_BINS = 100  # ranking histograms
CALIBRATION_BINS = 15


@dataclass(frozen=True)
class Scored:
    """A result as written to ``path``, parsed, and the inputs it scored."""

    path: Path
    document: dict[str, Any]
    logits: np.ndarray
    labels: np.ndarray


def confused(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits favouring the label, often its next class too; the first half of classes twice
    as frequent (supports differ, so sorting by support means something)."""
    rng = np.random.default_rng(seed)
    weights = np.where(np.arange(c) < c // 2, 2.0, 1.0)
    labels = rng.choice(c, n, p=weights / weights.sum())
    logits = rng.standard_normal((n, c)).astype(np.float32)
    logits[np.arange(n), labels] += 2.0
    logits[np.arange(n), (labels + 1) % c] += rng.uniform(0.0, 2.2, n).astype(np.float32)
    return logits, labels


def multilabel(n: int, labels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits that lean towards their 0 / 1 targets."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 2, (n, labels))
    logits = (rng.standard_normal((n, labels)) + 1.3 * (2 * targets - 1)).astype(np.float32)
    return logits, targets


def post(
    client: TestClient, path: Path, logits: np.ndarray, labels: np.ndarray, **body: Any
) -> Scored:
    """``POST /score`` of the batch (no per-sample arrays); the response written to ``path``."""
    content = orjson.dumps(
        {"logits": logits, "labels": labels, "per_sample": False, **body},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    response = client.post("/score", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    path.write_bytes(response.content)
    return Scored(path, response.json(), logits, labels)


# slice values are data: one that matplotlib would read as math ($...$) must print as it is
REGIONS = ["$price\\frac$", "apac", "eu"]
