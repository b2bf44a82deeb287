"""A scoring service written the obvious way: the baseline for the HTTP benchmarks.

What a user who needs focal loss and metrics over HTTP would write first, following the
FastAPI tutorial: a pydantic model with ``logits: list[list[float]]`` validates the JSON body,
the tutorial focal loss runs in eager PyTorch, the metrics come from scikit-learn, and the
response is a dict of Python lists that FastAPI encodes. The JSON route is a plain ``def``
(FastAPI runs it in its thread pool, as its docs advise for blocking code). The binary route
takes an ``.npz`` body through ``np.load``, the natural binary variant; it is ``async def``
because it awaits the body, and then computes on the event loop, as such code usually does.

Run with ``uvicorn bench.baselines.naive_service:app``; :mod:`bench.servers` does.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from fastapi import FastAPI, Request
from pydantic import BaseModel

from bench.baselines.sklearn_metrics import sklearn_metrics
from bench.baselines.tutorial import tutorial_focal_loss

app = FastAPI(title="naive focal-loss service")


class ScoreRequest(BaseModel):
    """The JSON body: logits, labels, and the usual knobs."""

    logits: list[list[float]]
    labels: list[int]
    gamma: float = 2.0
    alpha: list[float] | None = None
    per_sample: bool = True


@app.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}


@app.post("/score")
def score(request: ScoreRequest) -> dict[str, Any]:
    """Score a JSON body."""
    logits = torch.tensor(request.logits)
    labels = torch.tensor(request.labels)
    return evaluate(logits, labels, request.gamma, request.alpha, request.per_sample)


@app.post("/score-npz")
async def score_npz(
    request: Request, gamma: float = 2.0, per_sample: bool = True
) -> dict[str, Any]:
    """Score an ``.npz`` body with arrays ``logits`` and ``labels``."""
    arrays = np.load(io.BytesIO(await request.body()))
    logits = torch.from_numpy(arrays["logits"])
    labels = torch.from_numpy(arrays["labels"])
    return evaluate(logits, labels, gamma, None, per_sample)


def evaluate(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gamma: float,
    alpha: list[float] | None,
    per_sample: bool,
) -> dict[str, Any]:
    """Per-sample focal loss, cross entropy, p(true), prediction and confidence, plus metrics."""
    num_classes = logits.shape[1]
    weights = torch.ones(num_classes) if alpha is None else torch.tensor(alpha)
    with torch.no_grad():
        focal = tutorial_focal_loss(logits, labels, weights, gamma, reduction="none")
        cross_entropy = F.cross_entropy(logits, labels, reduction="none")
        probabilities = torch.softmax(logits, dim=1)
        confidence, prediction = probabilities.max(dim=1)
        p_true = probabilities.gather(1, labels.unsqueeze(1)).squeeze(1)
    metrics = sklearn_metrics(logits.numpy(), labels.numpy())
    result: dict[str, Any] = {
        "metrics": {
            "mean_focal_loss": focal.mean().item(),
            "mean_cross_entropy": cross_entropy.mean().item(),
            **{name: float(value) for name, value in metrics.items() if np.ndim(value) == 0},
        },
        "per_class": {
            name: metrics[name].tolist() for name in ("precision", "recall", "f1", "support")
        },
        "confusion_matrix": metrics["confusion_matrix"].tolist(),
    }
    if per_sample:
        result["per_sample"] = {
            "focal_loss": focal.tolist(),
            "cross_entropy": cross_entropy.tolist(),
            "p_true": p_true.tolist(),
            "prediction": prediction.tolist(),
            "confidence": confidence.tolist(),
        }
    return result
