"""``POST /score``: logits and labels in, focal loss and class-balanced metrics out."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from focal_eval.service.core.auth import require_token
from focal_eval.service.core.batches import score_decoded
from focal_eval.service.core.error_handlers import ErrorResponse
from focal_eval.service.core.errors import RequestError, show
from focal_eval.service.core.runtime import Runtime, get_runtime
from focal_eval.service.http.body import refuse_long_json
from focal_eval.service.http.exchange import Payload, exchange
from focal_eval.service.http.responses import respond
from focal_eval.service.memory.budget import Reservation
from focal_eval.service.score.codec import QUERY_FIELDS, decode_json, decode_npz, encode_response
from focal_eval.service.score.npz import check_npz_start
from focal_eval.service.score.schemas import ScoreRequestBody, query_parameters

ROUTE = "/score"

JSON_TYPES = ("application/json",)
NPZ_TYPES = ("application/x-npz", "application/octet-stream")
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in [
        (400, "malformed body (JSON syntax, corrupt .npz or compressed data)"),
        (401, "FOCAL_AUTH_TOKEN is set and the bearer token is missing or wrong"),
        (408, "body not received in time"),
        (413, "body (or its decompressed form) over the limit, or work over the memory budget"),
        (415, "unsupported Content-Type or Content-Encoding"),
        (422, "a missing, unknown or invalid field: shape, dtype, label range, non-finite"),
        (503, "not ready, every slot in flight, or the memory budget busy (Retry-After)"),
    ]
}
OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "JSON, or an np.savez / np.savez_compressed archive (application/x-npz)"
        " with arrays logits, labels and optionally alpha, its other parameters in the query",
        "content": {
            "application/json": {"schema": ScoreRequestBody.model_json_schema()},
            "application/x-npz": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "parameters": query_parameters(QUERY_FIELDS),
}


def build_router(response: Any) -> APIRouter:
    """``POST /score``, its response schema built from the graphs' outputs by kind."""
    router = APIRouter(tags=["score"])
    router.add_api_route(
        ROUTE,
        score,
        methods=["POST"],
        response_model=response,
        responses=ERRORS,
        openapi_extra=OPENAPI,
        dependencies=[Depends(require_token)],
    )
    return router


async def score(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> Response:
    """Score a batch: per-sample focal loss and class-balanced metrics.

    JSON (``application/json``) or ``.npz`` (``application/x-npz``), optionally gzip / deflate
    encoded. Parsed with orjson / numpy straight into arrays, answered with orjson.
    """
    runtime.ready_scorers()  # 503 before reading a body the server cannot score
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES + NPZ_TYPES:
        raise RequestError(
            415,
            f"Content-Type: {show(content_type or 'missing')} is not supported; use"
            " application/json or application/x-npz",
        )
    query = dict(request.query_params)
    if content_type in JSON_TYPES and query:
        raise RequestError(
            422,
            f"{next(iter(query))}: query parameters are for .npz bodies; put it in the JSON body",
        )
    return await exchange(
        request, runtime, ROUTE, partial(_score, runtime, content_type in JSON_TYPES, query)
    )


def _score(
    runtime: Runtime,
    is_json: bool,
    query: Mapping[str, str],
    payload: Payload,
    reservation: Reservation,
) -> Response:
    """Decode, score and encode: the blocking part, run in a worker thread."""
    settings = runtime.settings
    if is_json:
        payload.decode(settings.max_decoded_json_bytes, reservation)
        refuse_long_json(len(payload.data), settings.max_json_bytes)
        request = decode_json(payload, reservation)
    else:
        payload.decode(settings.max_body_bytes, reservation, check_npz_start)
        request = decode_npz(payload, query, settings.max_body_bytes, reservation)
    per_sample = None if request.per_sample else ()
    scored = score_decoded(runtime, ROUTE, request.decoded, per_sample, payload.data, reservation)
    pieces = encode_response(request, scored, settings)
    retained = sum(array.nbytes for array in scored.outputs.values())
    return respond(pieces, reservation, retained, "application/json")
