"""``POST /score`` bodies: JSON or ``.npz`` in, JSON out; orjson and numpy, no pydantic.

JSON: ``{"logits", "labels", "gamma"?, "alpha"?, "ignore_index"?, "per_sample"?, "monitor"?,
"source"?}``. npz: arrays ``logits``, ``labels``, optional ``alpha``; the other parameters in
the query string (``?gamma=2&ignore_index=-100&per_sample=false&source=canary``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from service.errors import RequestError
from service.jsonio import dumps
from service.npz import load_npz
from service.scoring import Defaults, Outputs, Scorer
from service.validation import (
    Batch,
    check_bool,
    check_source_type,
    invalid,
)

JSON_FIELDS = (
    "logits",
    "labels",
    "gamma",
    "alpha",
    "ignore_index",
    "per_sample",
    "monitor",
    "source",
)
QUERY_FIELDS = ("gamma", "ignore_index", "per_sample", "monitor", "source")
PER_SAMPLE = ("focal_loss", "cross_entropy", "p_true", "prediction", "confidence")
PER_CLASS = ("precision", "recall", "f1", "support")
SCALAR_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "weighted_f1",
    "matthews_corrcoef",
    "mean_focal_loss",
    "alpha_weighted_focal_loss",
    "class_balanced_focal_loss",
    "mean_cross_entropy",
    "expected_calibration_error",
    "brier_score",
)


@dataclass(frozen=True)
class ScoreRequest:
    """A decoded, validated ``/score`` request."""

    batch: Batch
    per_sample: bool
    alpha_given: bool
    monitor: bool | None  # None: the server's default (FOCAL_MONITOR_DEFAULT)
    source: str | None  # None: the first of FOCAL_MONITOR_SOURCES


def decode_json(body: bytes | bytearray, defaults: Defaults) -> ScoreRequest:
    """Parse and validate a JSON body.

    Raises:
        RequestError: 400 malformed JSON; 422 a missing, unknown or invalid field.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestError(400, f"body: malformed JSON ({error})") from error
    if not isinstance(document, dict):
        raise invalid("body: expected a JSON object with logits and labels")
    _check_fields(document, JSON_FIELDS, "field")
    for name in ("logits", "labels"):
        if name not in document:
            raise invalid(f"{name}: missing (required)")
    logits = _numeric_array("logits", document["logits"], np.float32)
    labels = _numeric_array("labels", document["labels"], None)
    alpha = (
        None
        if document.get("alpha") is None
        else _numeric_array("alpha", document["alpha"], np.float32)
    )
    monitor = document.get("monitor")
    return ScoreRequest(
        defaults.batch(logits, labels, alpha, document.get("gamma"), document.get("ignore_index")),
        check_bool("per_sample", document.get("per_sample", True)),
        alpha is not None or defaults.alpha is not None,
        None if monitor is None else check_bool("monitor", monitor),
        check_source_type(document.get("source")),
    )


def decode_npz(
    body: bytes | bytearray, query: Mapping[str, str], defaults: Defaults, limit: int
) -> ScoreRequest:
    """Parse and validate an ``.npz`` body with parameters in the query string.

    Raises:
        RequestError: 400 / 413 / 415 for the archive (see :func:`service.npz.load_npz`);
            422 for a missing, unknown or invalid array or parameter.
    """
    _check_fields(query, QUERY_FIELDS, "query parameter")
    arrays = load_npz(body, required=("logits", "labels"), optional=("alpha",), limit=limit)
    alpha = arrays.get("alpha")
    gamma = _parse_query("gamma", query.get("gamma"), float)
    ignore_index = _parse_query("ignore_index", query.get("ignore_index"), int)
    return ScoreRequest(
        defaults.batch(arrays["logits"], arrays["labels"], alpha, gamma, ignore_index),
        _query_bool("per_sample", query.get("per_sample")) is not False,
        alpha is not None or defaults.alpha is not None,
        _query_bool("monitor", query.get("monitor")),
        query.get("source"),
    )


def encode_response(
    scorer: Scorer, request: ScoreRequest, outputs: Outputs, model_name: str, monitored: bool
) -> bytes:
    """The JSON response: model, parameters, metrics, per-class table, statistics, per-sample.

    NaN (undefined metrics) is written as ``null``.

    Raises:
        RequestError: 422 when a loss overflowed float32 (JSON has no infinity, and ``null``
            would read as "undefined").
    """
    batch = request.batch
    document: dict[str, Any] = {
        "model": {
            "name": model_name,
            "id": scorer.model_id,
            "kind": scorer.evaluation.kind,
            "format": scorer.evaluation.manifest["format"],
        },
        "n": int(batch.labels.shape[0]),
        "num_classes": batch.num_classes,
        "shape": list(batch.shape),
        "valid": int(outputs["confusion_matrix"].sum()),
        "monitored": monitored,
        "parameters": {
            "gamma": batch.gamma,
            "ignore_index": batch.ignore_index,
            "alpha": batch.alpha if request.alpha_given else None,
        },
        "metrics": {name: float(outputs[name]) for name in SCALAR_METRICS},
        "per_class": {name: outputs[name] for name in PER_CLASS},
        "confusion_matrix": outputs["confusion_matrix"],
        "statistics": {
            name: outputs[name] for name in scorer.statistics_names if name != "confusion_matrix"
        },
    }
    if request.per_sample:
        document["per_sample"] = {name: outputs[name] for name in PER_SAMPLE}
    return dumps(document)


def _check_fields(given: Mapping[str, Any], accepted: tuple[str, ...], what: str) -> None:
    unknown = [name for name in given if name not in accepted]
    if unknown:
        raise invalid(f"{unknown[0][:40]}: unknown {what} (accepted: {', '.join(accepted)})")


def _numeric_array(name: str, value: Any, dtype: type[np.floating[Any]] | None) -> npt.NDArray[Any]:
    if not isinstance(value, list):
        raise invalid(f"{name}: expected a list, got {type(value).__name__}")
    try:
        with np.errstate(over="ignore"):  # beyond float32: inf, refused later as non-finite
            array = np.asarray(value, dtype=dtype)
    except ValueError as error:
        if "inhomogeneous" in str(error) or "sequence" in str(error):
            raise invalid(f"{name}: rows have different lengths (a ragged list)") from error
        raise invalid(f"{name}: expected numbers ({error})") from error
    except TypeError as error:
        raise invalid(f"{name}: expected numbers, found null or another non-number") from error
    if array.dtype == object:
        raise invalid(f"{name}: expected numbers, found null or another non-number")
    return array


def _query_bool(name: str, value: str | None) -> bool | None:
    if value is None:
        return None
    if value.lower() not in ("true", "false", "1", "0"):
        raise invalid(f"{name}: expected true or false, got {value[:40]!r}")
    return value.lower() in ("true", "1")


def _parse_query(name: str, value: str | None, kind: type[float] | type[int]) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError as error:
        expected = "a number" if kind is float else "an integer"
        raise invalid(f"{name}: expected {expected}, got {value[:40]!r}") from error
