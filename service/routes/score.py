"""``POST /score``: logits and labels in, focal loss and class-balanced metrics out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from service.auth import require_token
from service.errors import RequestError
from service.receive import receive
from service.schemas import ErrorResponse, ScoreRequest, ScoreResponse
from service.score_codec import decode_json, decode_npz, encode_response
from service.state import Runtime, get_runtime

router = APIRouter(tags=["score"])

JSON_TYPES = ("application/json",)
NPZ_TYPES = ("application/x-npz", "application/octet-stream")
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in [
        (400, "malformed body (JSON syntax, corrupt .npz or compressed data)"),
        (401, "FOCAL_AUTH_TOKEN is set and the bearer token is missing or wrong"),
        (408, "body not received in time"),
        (413, "body (or its decompressed form) over the limit"),
        (415, "unsupported Content-Type or Content-Encoding"),
        (422, "a missing, unknown or invalid field: shape, dtype, label range, non-finite"),
        (503, "not ready, or every slot in flight"),
    ]
}
OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "JSON, or an np.savez / np.savez_compressed archive (application/x-npz)"
        " with arrays logits, labels and optionally alpha, its other parameters in the query",
        "content": {
            "application/json": {"schema": ScoreRequest.model_json_schema()},
            "application/x-npz": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "parameters": [
        {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
        for name, schema, text in [
            ("gamma", {"type": "number", "minimum": 0}, ".npz bodies only"),
            ("ignore_index", {"type": "integer"}, ".npz bodies only"),
            ("per_sample", {"type": "boolean"}, ".npz bodies only"),
        ]
    ],
}


@router.post(
    "/score",
    response_model=ScoreResponse,
    responses=ERRORS,
    openapi_extra=OPENAPI,
    dependencies=[Depends(require_token)],
)
async def score(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> Response:
    """Score a batch: per-sample focal loss and class-balanced metrics.

    JSON (``application/json``) or ``.npz`` (``application/x-npz``), optionally gzip / deflate
    encoded. Parsed with orjson / numpy straight into arrays, answered with orjson.
    """
    runtime.ready_scorer()  # 503 before reading a body the server cannot score
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES + NPZ_TYPES:
        raise RequestError(
            415,
            f"Content-Type: {content_type or 'missing'!r} is not supported; use"
            " application/json or application/x-npz",
        )
    async with runtime.gate.admit():
        body = await receive(request, runtime.settings)
        content = await runtime.gate.run(
            _score, runtime, content_type, body, dict(request.query_params)
        )
    return Response(content, media_type="application/json")


def _score(
    runtime: Runtime, content_type: str, body: bytes | bytearray, query: Mapping[str, str]
) -> bytes:
    """Decode, score and encode: the blocking part, run in a worker thread."""
    scorer = runtime.ready_scorer()
    if content_type in JSON_TYPES:
        if query:
            name = next(iter(query))
            raise RequestError(
                422, f"{name}: query parameters are for .npz bodies; put it in the JSON body"
            )
        request = decode_json(body, scorer.defaults)
    else:
        request = decode_npz(body, query, scorer.defaults, runtime.settings.max_body_bytes)
    choice = runtime.monitoring(request.monitor, request.source)
    outputs = scorer.score(request.batch)
    monitored = runtime.record("/score", choice, request.batch, outputs)
    return encode_response(scorer, request, outputs, runtime.settings.model_name, monitored)
