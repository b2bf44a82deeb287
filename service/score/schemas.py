"""Pydantic models that document ``/score`` in OpenAPI.

They describe requests and responses; the hot path does not validate through them (bodies are parsed
straight into numpy, see :mod:`focal_eval.service.score.codec`), and tests check that what these
schemas state is what the endpoint accepts and returns. The response model is built from the
evaluation graph's manifest (:func:`score_response`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from focal_eval.service.artifacts import Output


class ScoreRequestBody(BaseModel):
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


def query_parameters(names: Sequence[str]) -> list[dict[str, Any]]:
    """The named body fields as OpenAPI query parameters (how ``.npz`` bodies send them)."""
    properties = ScoreRequestBody.model_json_schema()["properties"]
    parameters = []
    for name in names:
        field = properties[name]
        schema = next(s for s in field.get("anyOf", [field]) if s.get("type") != "null")
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": {key: value for key, value in schema.items() if key != "title"},
                "description": f".npz bodies only: {field['description']}",
            }
        )
    return parameters


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


class ScoreResponseBase(BaseModel):
    """``POST /score`` response: what every response has, whatever the graph outputs."""

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


def score_response(outputs: Sequence[Output]) -> type[BaseModel]:
    """The ``/score`` response model for an evaluation graph's ``outputs`` (its manifest).

    ``metrics`` holds the scalar metrics (null when undefined), ``per_class`` the per-class
    ones, ``confusion_matrix`` and ``statistics`` the additive statistics, ``per_sample`` the
    per-row arrays: each named and typed as the manifest states, so that a new output of the
    graph appears here (and in the OpenAPI document) with no edit to the service.
    """

    def group(name: str, doc: str, group: str, rank: int | None, value: Any) -> type[BaseModel]:
        fields: dict[str, Any] = {
            o.name: (value(o), ...)
            for o in outputs
            if o.group == group
            and (rank is None or len(o.shape) == rank)
            and o.name != "confusion_matrix"
        }
        return create_model(name, __doc__=doc, **fields)

    def listed(output: Output) -> Any:
        return list[int] if output.dtype.kind in "iu" else list[float]

    metrics = group(
        "Metrics",
        "Scalar metrics; null when undefined (no valid rows).",
        "metrics",
        0,
        lambda o: float | None,
    )
    per_class = group("PerClass", "Per-class values, each of length C.", "metrics", 1, listed)
    statistics = group(
        "Statistics",
        "The batch's additive statistics besides the confusion matrix: add them across batches.",
        "statistics",
        None,
        listed,
    )
    per_sample = group(
        "PerSample",
        "Per-row values in the labels' row-major order (0 loss / p_true where ignored).",
        "per_sample",
        None,
        listed,
    )
    optional_per_sample: Any = per_sample | None
    return create_model(
        "ScoreResponse",
        __base__=ScoreResponseBase,
        metrics=(metrics, ...),
        per_class=(per_class, ...),
        confusion_matrix=(
            list[list[int]],
            Field(description="rows: true class; columns: predicted"),
        ),
        statistics=(statistics, ...),
        per_sample=(
            optional_per_sample,
            Field(None, description="absent when per_sample is false"),
        ),
    )
