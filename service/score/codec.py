"""``POST /score`` bodies: JSON or ``.npz`` in, JSON out; orjson and numpy, no pydantic.

JSON: ``{"logits", "labels", "gamma"?, "alpha"?, "ignore_index"?, "per_sample"?, "monitor"?,
"source"?}``. npz: arrays ``logits``, ``labels``, optional ``alpha``; the other parameters in
the query string (``?gamma=2&ignore_index=-100&per_sample=false&source=canary``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from focal_eval.service.core.batches import Decoded, Scored
from focal_eval.service.core.errors import bad_request, cut, invalid, show
from focal_eval.service.core.scoring import Scorer
from focal_eval.service.core.validation import (
    check_bool,
    check_source_type,
)
from focal_eval.service.http.exchange import Payload
from focal_eval.service.http.json_arrays import load_arrays
from focal_eval.service.http.jsonio import iter_dumps
from focal_eval.service.memory import costs
from focal_eval.service.memory.budget import Reservation
from focal_eval.service.score.npz import load_npz

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
CONFUSION = "confusion_matrix"  # a statistic the response puts beside the others


@dataclass(frozen=True)
class ScoreRequest:
    """A decoded ``/score`` request; ``per_sample``: answer with the per-sample arrays."""

    decoded: Decoded
    per_sample: bool


def decode_json(payload: Payload, reservation: Reservation) -> ScoreRequest:
    """Parse a JSON body into arrays, freeing the text as soon as it is parsed.

    Regular logits and labels go straight from the text to numpy
    (:func:`focal_eval.service.http.json_arrays.load_arrays`); anything else is parsed by orjson
    into Python objects, which gives malformed input its precise error. Each path's memory is
    reserved before it runs (:mod:`focal_eval.service.memory.costs`, counted from the text), so that
    no JSON body can take more than the budget allows.

    Raises:
        RequestError: 400 malformed JSON; 422 a missing, unknown or invalid field;
            503 / 413 when parsing would not fit in the memory budget.
    """
    held = reservation.nbytes
    reservation.resize(held + costs.json_arrays(payload.data), "body (JSON)")
    document = load_arrays(payload.data, {"logits": "float", "labels": "int", "alpha": "float"})
    if document is None:
        reservation.resize(held + costs.json_parse(payload.data), "body (JSON)")
        try:
            document = orjson.loads(payload.data)
        except orjson.JSONDecodeError as error:
            raise bad_request(f"body: malformed JSON ({error})") from error
    payload.data = b""
    if not isinstance(document, dict):
        raise invalid("body: expected a JSON object with logits and labels")
    _check_fields(document, JSON_FIELDS, "field")
    for name in ("logits", "labels"):
        if name not in document:
            raise invalid(f"{name}: missing (required)")
    logits = _numeric_array("logits", document.pop("logits"), np.float32)
    labels = _numeric_array("labels", document.pop("labels"), None)
    alpha = document.pop("alpha", None)
    monitor = document.get("monitor")
    decoded = Decoded(
        logits,
        labels,
        None if alpha is None else _numeric_array("alpha", alpha, np.float32),
        document.get("gamma"),
        document.get("ignore_index"),
        None if monitor is None else check_bool("monitor", monitor),
        check_source_type(document.get("source")),
    )
    return ScoreRequest(decoded, check_bool("per_sample", document.get("per_sample", True)))


def decode_npz(
    payload: Payload, query: Mapping[str, str], limit: int, reservation: Reservation
) -> ScoreRequest:
    """Parse an ``.npz`` body, with parameters in the query string, into arrays.

    Stored members are views of the body; compressed ones are reserved before they are
    inflated.

    Raises:
        RequestError: 400 / 413 / 415 for the archive (see
            :func:`focal_eval.service.score.npz.load_npz`); 422 for a missing, unknown or
            invalid array or parameter; 503 / 413 when the inflated members would not fit in
            the memory budget.
    """
    _check_fields(query, QUERY_FIELDS, "query parameter")
    arrays = load_npz(
        payload.data,
        required=("logits", "labels"),
        optional=("alpha",),
        limit=limit,
        reserve=lambda nbytes: reservation.grow(nbytes, "body (.npz members)"),
    )
    decoded = Decoded(
        arrays["logits"],
        arrays["labels"],
        arrays.get("alpha"),
        _parse_query("gamma", query.get("gamma"), float),
        _parse_query("ignore_index", query.get("ignore_index"), int),
        _query_bool("monitor", query.get("monitor")),
        query.get("source"),
    )
    return ScoreRequest(decoded, _query_bool("per_sample", query.get("per_sample")) is not False)


def encode_response(
    scorer: Scorer, request: ScoreRequest, scored: Scored, model_name: str
) -> Iterator[bytes]:
    """The JSON response, in pieces (:func:`focal_eval.service.http.jsonio.iter_dumps`).

    Model, batch, parameters, then the graph's outputs by their manifest groups: scalar
    metrics, per-class metrics, the confusion matrix, the other statistics, and (if asked)
    the per-sample arrays. NaN (an undefined metric) is written as ``null``.
    """
    batch, outputs = scored.batch, scored.outputs
    alpha_given = request.decoded.alpha is not None or scorer.defaults.alpha is not None
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
        "valid": int(outputs[CONFUSION].sum()),
        "monitored": scored.monitored,
        "unmonitored_reason": scored.unmonitored_reason,
        "parameters": {
            "gamma": batch.gamma,
            "ignore_index": batch.ignore_index,
            "alpha": batch.alpha if alpha_given else None,
        },
        "metrics": {name: float(outputs[name]) for name in scorer.names("metrics", 0)},
        "per_class": {name: outputs[name] for name in scorer.names("metrics", 1)},
        CONFUSION: outputs[CONFUSION],
        "statistics": {
            name: outputs[name] for name in scorer.statistics_names if name != CONFUSION
        },
    }
    if request.per_sample:
        document["per_sample"] = {name: outputs[name] for name in scorer.per_sample_names}
    return iter_dumps(document)


def _check_fields(given: Mapping[str, Any], accepted: tuple[str, ...], what: str) -> None:
    unknown = [name for name in given if name not in accepted]
    if unknown:
        raise invalid(f"{cut(unknown[0])}: unknown {what} (accepted: {', '.join(accepted)})")


def _numeric_array(name: str, value: Any, dtype: type[np.floating[Any]] | None) -> npt.NDArray[Any]:
    if isinstance(value, np.ndarray):  # read straight from the text: numbers, regular
        with np.errstate(over="ignore"):
            return value if dtype is None else value.astype(dtype, copy=False)
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
        raise invalid(f"{name}: expected true or false, got {show(value)}")
    return value.lower() in ("true", "1")


def _parse_query(name: str, value: str | None, kind: type[float] | type[int]) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError as error:
        expected = "a number" if kind is float else "an integer"
        raise invalid(f"{name}: expected {expected}, got {show(value)}") from error
