"""``POST /score`` bodies: JSON or ``.npz`` in, JSON out; orjson and numpy, no pydantic.

JSON: ``{"logits", "labels", "task"?, "inputs"?, "gamma"?, "alpha"?, "threshold"?,
"ignore_index"?, "ranking"?, "per_sample"?, "monitor"?, "source"?}``. npz: arrays ``logits``,
``labels``, optional ``alpha``; the other parameters in the query string
(``?gamma=2&ignore_index=-100&per_sample=false&source=canary``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from focal_eval.service.core.batches import Decoded, Scored, reported_parameters
from focal_eval.service.core.errors import bad_request, cut, invalid, show
from focal_eval.service.core.metric_groups import metric_groups
from focal_eval.service.core.settings import Settings
from focal_eval.service.core.tasks import BINARY
from focal_eval.service.core.validation import check_bool, check_source_type
from focal_eval.service.http.exchange import Payload
from focal_eval.service.http.json_arrays import load_arrays
from focal_eval.service.http.jsonio import iter_dumps
from focal_eval.service.memory import costs
from focal_eval.service.memory.budget import Reservation
from focal_eval.service.score.npz import load_npz

QUERY_FIELDS = (
    "task",
    "inputs",
    "gamma",
    "threshold",
    "ignore_index",
    "ranking",
    "per_sample",
    "monitor",
    "source",
)
JSON_FIELDS = ("logits", "labels", "alpha", *QUERY_FIELDS)


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
    payload.close()
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
        _alpha(alpha),
        document.get("gamma"),
        document.get("ignore_index"),
        None if monitor is None else check_bool("monitor", monitor),
        check_source_type(document.get("source")),
        task=document.get("task"),
        inputs=document.get("inputs"),
        threshold=document.get("threshold"),
        ranking=document.get("ranking"),
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
        task=query.get("task"),
        inputs=query.get("inputs"),
        threshold=_parse_query("threshold", query.get("threshold"), float),
        ranking=_query_bool("ranking", query.get("ranking")),
    )
    return ScoreRequest(decoded, _query_bool("per_sample", query.get("per_sample")) is not False)


def encode_response(request: ScoreRequest, scored: Scored, settings: Settings) -> Iterator[bytes]:
    """The JSON response, in pieces (:func:`focal_eval.service.http.jsonio.iter_dumps`).

    Model, task, batch, parameters, then the graphs' outputs by their manifest groups: scalar
    metrics, per-class (or per-label) metrics, the statistics (the confusion matrix among
    them, as in ``/summary``), and (if asked) the per-sample arrays
    (:func:`~focal_eval.service.core.metric_groups.metric_groups`). NaN (an undefined metric)
    is written as ``null``.
    """
    batch, outputs, scorer = scored.batch, scored.outputs, scored.scorers[0]
    statistics = [name for s in scored.scorers for name in s.statistics_names]
    labels = batch.inputs[scorer.task.labels]
    document: dict[str, Any] = {
        "model": {
            "name": settings.model_name,
            "id": scorer.model_id,
            "kind": scorer.evaluation.kind,
            "format": scorer.evaluation.manifest["format"],
        },
        "task": batch.task,
        "n": batch.rows,
    }
    if batch.task != BINARY:
        document[f"num_{scorer.task.width}"] = batch.width
    document |= {
        "shape": list(batch.shape),
        "valid": int(np.count_nonzero(labels != batch.parameters["ignore_index"])),
        "monitored": scored.monitored,
        "unmonitored_reason": scored.unmonitored_reason,
        "parameters": reported_parameters(batch, request.decoded.alpha, settings),
    }
    document |= metric_groups(batch.task, scored.scorers, outputs)
    document["statistics"] = {name: outputs[name] for name in statistics}
    if request.per_sample:
        document["per_sample"] = {name: outputs[name] for name in scorer.per_sample_names}
    return iter_dumps(document)


def _alpha(value: Any) -> npt.NDArray[Any] | float | None:
    """``alpha`` as sent: a list (per class) or one number (multi-label and binary)."""
    if value is None or isinstance(value, np.ndarray | list):
        return None if value is None else _numeric_array("alpha", value, np.float32)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"alpha: expected a list of numbers or one number, got {show(value)}")
    return float(value)


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
