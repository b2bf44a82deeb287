"""Pydantic models that document the HTTP surface in OpenAPI.

They describe requests and responses; the hot path does not validate through them (bodies are
parsed with orjson straight into numpy, see :mod:`service.score.codec`), and tests check that
what these schemas state is what the endpoints accept and return.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ScoreRequest(BaseModel):
    """``POST /score`` JSON body."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "logits": [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]],
                    "labels": [0, 2],
                    "gamma": 2.0,
                    "per_sample": True,
                }
            ]
        },
    )

    logits: list[list[float]] = Field(
        description="(N, C) logits, C >= 2, N >= 1; segmentation-shaped (N, C, d1, ...) nested"
        " lists are accepted too (flattened to (N * d1 * ..., C), class dimension last)",
        min_length=1,
    )
    labels: list[int] = Field(
        description="(N,) class indices in [0, C) or ignore_index; (N, d1, ...) for"
        " segmentation-shaped logits",
        min_length=1,
    )
    gamma: float | None = Field(None, ge=0, description="focusing parameter; default: server's")
    alpha: list[float] | None = Field(
        None, description="(C,) per-class weights >= 0; default: server's, else all ones"
    )
    ignore_index: int | None = Field(None, description="label of rows to skip; default -100")
    per_sample: bool = Field(True, description="return the per-sample arrays")
    monitor: bool | None = Field(
        None, description="feed the monitor (/metrics, /summary); default FOCAL_MONITOR_DEFAULT"
    )
    source: str | None = Field(
        None, description="monitoring label, one of FOCAL_MONITOR_SOURCES (default: the first)"
    )


class ModelInfo(BaseModel):
    """Which graph scored the request."""

    name: str
    id: str = Field(description="sha256 of the evaluation graph")
    kind: str
    format: str


class Parameters(BaseModel):
    """The parameters the batch was scored with (request values or defaults)."""

    gamma: float
    ignore_index: int
    alpha: list[float] | None = Field(description="null: all ones")


class Metrics(BaseModel):
    """Scalar metrics; null when undefined (no valid rows)."""

    accuracy: float | None
    balanced_accuracy: float | None
    macro_f1: float | None
    weighted_f1: float | None
    matthews_corrcoef: float | None
    mean_focal_loss: float | None
    alpha_weighted_focal_loss: float | None
    class_balanced_focal_loss: float | None
    mean_cross_entropy: float | None
    expected_calibration_error: float | None
    brier_score: float | None


class PerClass(BaseModel):
    """Per-class values, each of length C."""

    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]


class Statistics(BaseModel):
    """The batch's additive statistics besides the confusion matrix: add them across batches."""

    focal_loss_sum: list[float]
    cross_entropy_sum: list[float]
    alpha_sum: list[float]
    brier_sum: list[float]
    bin_count: list[int]
    bin_confidence_sum: list[float]
    bin_correct: list[int]


class PerSample(BaseModel):
    """Per-row values in the labels' row-major order (0 loss / p_true where ignored)."""

    focal_loss: list[float]
    cross_entropy: list[float]
    p_true: list[float]
    prediction: list[int]
    confidence: list[float]


class ScoreResponse(BaseModel):
    """``POST /score`` response."""

    model: ModelInfo
    n: int = Field(description="rows scored (N * d1 * ... for segmentation-shaped input)")
    num_classes: int
    shape: list[int] = Field(description="the labels' shape as sent")
    valid: int = Field(description="rows not ignored")
    monitored: bool = Field(description="whether the batch fed the monitor")
    unmonitored_reason: str | None = Field(
        description="why a batch meant for the monitor was not fed: too_many_classes"
        " (over FOCAL_MONITOR_MAX_CLASSES) or class_count (its source monitors another count)"
    )
    parameters: Parameters
    metrics: Metrics
    per_class: PerClass
    confusion_matrix: list[list[int]] = Field(description="rows: true class; columns: predicted")
    statistics: Statistics
    per_sample: PerSample | None = Field(None, description="absent when per_sample is false")


class ErrorResponse(BaseModel):
    """Every error: a message that names the field at fault."""

    error: str
