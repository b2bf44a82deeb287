"""Pydantic models that document ``/score`` in OpenAPI.

They describe requests and responses; the hot path does not validate through them (bodies are parsed
straight into numpy, see :mod:`focal_eval.service.score.codec`), and tests check that what these
schemas state is what the endpoint accepts and returns. The response model is built from the
evaluation graph's manifest (:func:`score_response`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from focal_eval.service.artifacts import Output
from focal_eval.service.core.metric_groups import averaged


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

    logits: list[list[float]] | list[float] = Field(
        description="multiclass: (N, C) logits, C >= 2 (or segmentation-shaped (N, C, d1, ...)"
        " nested lists, flattened to (N * d1 * ..., C)); multilabel: (N, L); binary: (N,) or"
        " (N, 1); probabilities instead with inputs: probabilities",
        min_length=1,
    )
    labels: list[int] | list[list[int]] = Field(
        description="multiclass: (N,) class indices in [0, C) or ignore_index ((N, d1, ...) for"
        " segmentation-shaped logits); multilabel: the logits' shape, each 0, 1 or"
        " ignore_index; binary: (N,)",
        min_length=1,
    )
    task: Literal["multiclass", "multilabel", "binary"] | None = Field(
        None,
        description="default: from the shapes (labels with one dimension fewer than the logits:"
        " multiclass; of the logits' shape: multilabel; one logit a sample: binary)",
    )
    inputs: Literal["logits", "probabilities"] | None = Field(
        None,
        description="what logits holds (default logits); probabilities are converted to"
        " logits: multiclass log(max(p, 1e-7)), its rows summing to 1 within 1e-3;"
        " multilabel and binary logit(clip(p, 1e-7, 1 - 1e-7))",
    )
    gamma: float | None = Field(None, ge=0, description="focusing parameter; default: server's")
    alpha: list[float] | float | None = Field(
        None,
        description="multiclass: (C,) per-class weights >= 0, default the server's, else all"
        " ones; multilabel and binary: one number <= 1, the weight of positives (negatives"
        " 1 - alpha, negative for none), default 0.25",
    )
    threshold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="multilabel and binary: a label is predicted positive when p >= threshold;"
        " default 0.5",
    )
    ignore_index: int | None = Field(None, description="label of rows to skip; default -100")
    ranking: bool | None = Field(
        None,
        description="multiclass: also one-vs-rest AUROC and average precision per class (a"
        " softmax and two histograms over N x C more); multilabel and binary always have them",
    )
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
    alpha: list[float] | float | None = Field(
        description="multiclass: per class, null for all ones; multilabel and binary: the"
        " weight of positives (negative: none)"
    )
    threshold: float | None = Field(
        None, description="multilabel and binary: a label is positive when p >= threshold"
    )


class ScoreResponseBase(BaseModel):
    """``POST /score`` response: what every response has, whatever the task and graph."""

    model: ModelInfo
    n: int = Field(description="rows scored (N * d1 * ... for segmentation-shaped input)")
    shape: list[int] = Field(description="the labels' shape as sent")
    valid: int = Field(
        description="multiclass: rows not ignored; multilabel and binary: label decisions"
        " not ignored"
    )
    monitored: bool = Field(description="whether the batch fed the monitor")
    unmonitored_reason: str | None = Field(
        description="why a batch meant for the monitor was not fed: too_many_classes"
        " (over FOCAL_MONITOR_MAX_CLASSES), class_count (its source monitors another count)"
        " or task (its source monitors another task)"
    )
    parameters: Parameters


class ComputeResponseBase(BaseModel):
    """``POST /compute`` response: what every one has."""

    model: ModelInfo = Field(description="the metrics graph that computed it")


def response_models(outputs: Mapping[str, Sequence[Output]]) -> tuple[Any, Any]:
    """The ``/score`` and ``/compute`` response models: one per task, told apart by ``task``.

    Built from the manifests' ``outputs`` by artifact kind: ``metrics`` holds the scalar
    metrics (null when undefined), ``per_class`` / ``per_label`` the per-class or per-label
    ones, ``statistics`` the additive statistics (the confusion matrix among them), ``per_sample``
    the per-row arrays: each named and typed as the manifests state, so that a new output of
    a graph appears here (and in the OpenAPI document) with no edit to the service. A
    ``/compute`` answer has the metrics groups of the same task (the same schemas).
    """
    evaluation, ranking = outputs.get("evaluation", []), outputs.get("ranking", [])
    opt_in = {o.name for o in ranking}
    pairs = [_task_models("multiclass", [*evaluation, *ranking], "classes", opt_in)]
    multilabel = outputs.get("multilabel_evaluation")
    if multilabel:
        pairs.append(_task_models("multilabel", multilabel, "labels"))
        pairs.append(_task_models("binary", multilabel, None))
    return tuple(
        Annotated[Union[tuple(models)], Field(discriminator="task")]  # noqa: UP007
        for models in zip(*pairs, strict=True)
    )  # type: ignore[return-value]


def typed(output: Output, nullable: bool, rank: int | None = None) -> Any:
    """The JSON type of an output: its dtype, nested in one list per dimension.

    ``rank`` lists if given: a binary batch's per-label values are sent as scalars.
    """
    kind: Any = int if output.dtype.kind in "iu" else float | None if nullable else float
    for _ in range(len(output.shape) if rank is None else rank):
        kind = list[kind]
    return kind


def _task_models(
    task: str, outputs: Sequence[Output], width: str | None, opt_in: Set[str] = frozenset()
) -> tuple[type[BaseModel], type[BaseModel]]:
    """The ``/score`` and ``/compute`` response models of one task, sharing their metrics.

    ``width`` None for binary (per-label values as scalars). Outputs named in ``opt_in`` (the
    ranking graph's) are present only when asked for.
    """
    title = task.capitalize()

    def required(name: str) -> Any:
        return Field(None, description="with ranking: true") if name in opt_in else ...

    def group(name: str, doc: str, group: str, rank: int | None, value: Any) -> type[BaseModel]:
        fields: dict[str, Any] = {
            o.name: (value(o), required(o.name))
            for o in outputs
            if o.group == group
            and (rank is None or len(o.shape) == rank)
            and not (width is None and rank == 0 and averaged(o.name))
        }
        return create_model(f"{title}{name}", __doc__=doc, **fields)

    def metric(output: Output) -> Any:
        return typed(output, nullable=True)  # NaN (undefined) is sent as null

    def exact(output: Output) -> Any:
        return typed(output, nullable=False)

    fields: dict[str, Any] = {"task": (Literal[task], ...)}
    if width is None:
        metrics: dict[str, Any] = {
            o.name: (typed(o, nullable=True, rank=0), ...)
            for o in outputs
            if o.group == "metrics"
            and len(o.shape) <= 1
            and not (len(o.shape) == 0 and averaged(o.name))
        }
        fields["metrics"] = (
            create_model(
                f"{title}Metrics",
                __doc__="Metrics of the one label; null when undefined.",
                **metrics,
            ),
            ...,
        )
    else:
        fields[f"num_{width}"] = (int, ...)
        fields["metrics"] = (
            group("Metrics", "Scalar metrics; null when undefined.", "metrics", 0, metric),
            ...,
        )
        unit = {"classes": "class", "labels": "label"}[width]
        fields[f"per_{unit}"] = (
            group(
                f"Per{unit.capitalize()}",
                f"Per-{unit} values; null where undefined.",
                "metrics",
                1,
                metric,
            ),
            ...,
        )
    compute = create_model(f"{title}ComputeResponse", __base__=ComputeResponseBase, **fields)
    fields["statistics"] = (
        group(
            "Statistics",
            "The batch's additive statistics: add them across batches.",
            "statistics",
            None,
            exact,
        ),
        ...,
    )
    per_sample: Any = group(
        "PerSample",
        "Per-row values in the labels' row-major order (0 where ignored).",
        "per_sample",
        None,
        exact,
    )
    fields["per_sample"] = (
        per_sample | None,
        Field(None, description="absent when per_sample is false"),
    )
    return create_model(f"{title}ScoreResponse", __base__=ScoreResponseBase, **fields), compute
