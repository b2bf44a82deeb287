"""Open Inference Protocol (KServe v2) REST routes, with Triton's binary tensor extension.

A thin layer over :mod:`focal_eval.service.inference.dataplane`: each route receives the body
(:mod:`focal_eval.service.http.exchange`), decodes it (:mod:`focal_eval.service.inference.decode`),
calls the dataplane, and encodes the outputs (:mod:`focal_eval.service.inference.encode`), binary or
JSON as the client asks. Errors are ``{"error": "..."}``: 400 for protocol errors, 404 for an
unknown model, 422 for invalid values.
"""

from __future__ import annotations

import importlib.metadata
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from focal_eval.service.core.auth import require_token
from focal_eval.service.core.error_handlers import ErrorResponse
from focal_eval.service.core.runtime import Runtime, get_runtime
from focal_eval.service.http.body import parse_length, refuse_long_json
from focal_eval.service.http.exchange import Payload, exchange
from focal_eval.service.http.responses import respond
from focal_eval.service.inference import dataplane
from focal_eval.service.inference.datatypes import HEADER_LENGTH
from focal_eval.service.inference.decode import check_request_start, decode_infer_request
from focal_eval.service.inference.encode import encode_infer_response
from focal_eval.service.memory import costs
from focal_eval.service.memory.budget import Reservation

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
ROUTE = "/v2/models/{name}/infer"
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in [
        (400, "a protocol error: malformed JSON, shape / datatype / size mismatch"),
        (401, "FOCAL_AUTH_TOKEN is set and the bearer token is missing or wrong"),
        (404, "unknown model or version"),
        (408, "body not received in time"),
        (413, "body over the limit, or work over the memory budget"),
        (415, "unsupported Content-Encoding"),
        (422, "invalid values: label range, non-finite logits, class count"),
        (503, "not ready, every slot in flight, or the memory budget busy (Retry-After)"),
    ]
}
MODEL_ERRORS: dict[int | str, dict[str, Any]] = {status: ERRORS[status] for status in (404, 503)}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string"},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A v2 inference request: JSON, or (Triton's binary extension) a JSON"
        " header of Inference-Header-Content-Length bytes followed by the binary tensors."
        " Inputs as the model's metadata lists them: logits (N, C) and labels (N) for"
        " FOCAL_MODEL_NAME, logits (N, L) and targets (N, L) for FOCAL_MODEL_NAME-multilabel;"
        " the others optional, one value each (alpha per class for multiclass); parameters"
        " monitor (bool), source (str), inputs (logits or probabilities), ranking (bool).",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"type": "object"},
                        "inputs": {"type": "array", "items": _TENSOR},
                        "outputs": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "example": {
                    "inputs": [
                        {
                            "name": "logits",
                            "shape": [2, 3],
                            "datatype": "FP32",
                            "data": [2.0, 0.5, -1.0, 0.1, 0.2, 3.0],
                        },
                        {"name": "labels", "shape": [2], "datatype": "INT64", "data": [0, 2]},
                    ],
                    "outputs": [{"name": "focal_loss"}, {"name": "balanced_accuracy"}],
                },
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}

Runtimes = Annotated[Runtime, Depends(get_runtime)]


@router.get("")
async def server_metadata() -> dict[str, Any]:
    """Server name, version and protocol extensions."""
    return {
        "name": "focal-eval",
        "version": importlib.metadata.version("focal-eval"),
        "extensions": ["binary_tensor_data"],
    }


@router.get("/models/{name}", responses=MODEL_ERRORS)
async def model_metadata(name: str, runtime: Runtimes) -> dict[str, Any]:
    """Inputs and outputs of the model's graphs, as v2 tensor metadata (-1: dynamic)."""
    return dataplane.metadata(runtime, name, dataplane.VERSION)


@router.get("/models/{name}/versions/{version}", responses=MODEL_ERRORS)
async def model_version_metadata(name: str, version: str, runtime: Runtimes) -> dict[str, Any]:
    """:func:`model_metadata` of one version (there is one: ``1``)."""
    return dataplane.metadata(runtime, name, version)


@router.get("/models/{name}/ready", responses=MODEL_ERRORS)
async def model_ready(name: str, runtime: Runtimes) -> dict[str, Any]:
    """200 when the model is loaded and warmed up."""
    dataplane.ready_model(runtime, name, dataplane.VERSION)
    return {"name": name, "ready": True}


@router.get("/models/{name}/versions/{version}/ready", responses=MODEL_ERRORS)
async def model_version_ready(name: str, version: str, runtime: Runtimes) -> dict[str, Any]:
    """:func:`model_ready` of one version."""
    dataplane.ready_model(runtime, name, version)
    return {"name": name, "ready": True}


@router.post(
    "/models/{name}/infer",
    responses=ERRORS,
    dependencies=[Depends(require_token)],
    openapi_extra=INFER_BODY,
)
async def infer(name: str, request: Request, runtime: Runtimes) -> Response:
    """Score a batch sent as v2 tensors (JSON, or binary after an Inference-Header)."""
    return await _exchange(request, runtime, name, dataplane.VERSION)


@router.post(
    "/models/{name}/versions/{version}/infer",
    responses=ERRORS,
    dependencies=[Depends(require_token)],
    openapi_extra=INFER_BODY,
)
async def infer_version(name: str, version: str, request: Request, runtime: Runtimes) -> Response:
    """:func:`infer` on one version."""
    return await _exchange(request, runtime, name, version)


async def _exchange(request: Request, runtime: Runtime, name: str, version: str) -> Response:
    model = dataplane.ready_model(runtime, name, version)
    header_length = parse_length(HEADER_LENGTH, request.headers.get(HEADER_LENGTH))
    return await exchange(request, runtime, ROUTE, partial(_infer, runtime, model, header_length))


def _infer(
    runtime: Runtime,
    model: dataplane.Model,
    header_length: int | None,
    payload: Payload,
    reservation: Reservation,
) -> Response:
    """Decode the HTTP body, score it through the dataplane, encode the outputs."""
    settings = runtime.settings
    # a JSON body is inflated no further than the JSON limit, past which it is refused anyway
    limit = settings.max_decoded_json_bytes if header_length is None else settings.max_body_bytes
    payload.decode(limit, reservation, check_request_start)
    json_length = len(payload.data) if header_length is None else header_length
    refuse_long_json(min(json_length, len(payload.data)), settings.max_json_bytes)
    reservation.grow(costs.json_parse(payload.data, header_length), "body (JSON header)")
    request = decode_infer_request(payload.data, header_length)
    scored = dataplane.infer(runtime, ROUTE, model, request, payload.data, reservation)
    pieces, headers = encode_infer_response(
        model.name,
        dataplane.VERSION,
        request.id,
        scored.outputs,
        request.outputs,
        request.binary_outputs_default,
        lambda nbytes: reservation.grow(nbytes, "response (JSON header)"),
    )
    # the arrays, and the JSON header put together before binary outputs (it holds their data)
    retained = sum(a.nbytes for a in scored.outputs.values()) + int(headers.get(HEADER_LENGTH, 0))
    media_type = headers.pop("Content-Type")
    return respond(pieces, reservation, retained, media_type, headers)
