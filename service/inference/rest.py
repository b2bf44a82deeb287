"""Open Inference Protocol (KServe v2) REST routes, with Triton's binary tensor extension.

Inputs: ``logits`` (N, C) and ``labels`` (N) required; ``alpha`` (C), ``gamma`` and
``ignore_index`` (shape [] or [1]) optional, defaulting as on ``/score``; request parameters
``monitor`` (bool) and ``source`` (str) as on ``/score``. Outputs: every output of the
evaluation graph, by name; binary or JSON as the client asks. Errors are
``{"error": "..."}``: 400 for protocol errors, 404 for an unknown model, 422 for invalid values.
"""

from __future__ import annotations

import importlib.metadata
from functools import partial
from typing import Annotated, Any

import numpy.typing as npt
from fastapi import APIRouter, Depends, Request, Response

from service.core.auth import require_token
from service.core.errors import RequestError
from service.core.runtime import Runtime, get_runtime
from service.core.scoring import Scorer
from service.core.validation import (
    Batch,
    check_bool,
    check_source_type,
)
from service.http.body import refuse_long_json
from service.http.exchange import Payload, exchange, reserve_batch
from service.http.responses import respond
from service.inference.datatypes import HEADER_LENGTH
from service.inference.decode import InferRequest, decode_infer_request, parse_header_length
from service.inference.encode import encode_infer_response
from service.memory import costs
from service.memory.budget import Reservation
from service.score.schemas import ErrorResponse

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
ROUTE = "/v2/models/{name}/infer"
VERSION = "1"
INPUTS = ("logits", "labels", "alpha", "gamma", "ignore_index")
DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64"}
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
        " Inputs logits (N, C) and labels (N); optional alpha (C), gamma, ignore_index;"
        " parameters monitor (bool) and source (str).",
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
    """Inputs and outputs of the evaluation graph, as v2 tensor metadata (-1: dynamic)."""
    return _metadata(runtime, name, VERSION)


@router.get("/models/{name}/versions/{version}", responses=MODEL_ERRORS)
async def model_version_metadata(name: str, version: str, runtime: Runtimes) -> dict[str, Any]:
    """:func:`model_metadata` of one version (there is one: ``1``)."""
    return _metadata(runtime, name, version)


@router.get("/models/{name}/ready", responses=MODEL_ERRORS)
async def model_ready(name: str, runtime: Runtimes) -> dict[str, Any]:
    """200 when the model is loaded and warmed up."""
    _model(runtime, name, VERSION)
    return {"name": name, "ready": True}


@router.get("/models/{name}/versions/{version}/ready", responses=MODEL_ERRORS)
async def model_version_ready(name: str, version: str, runtime: Runtimes) -> dict[str, Any]:
    """:func:`model_ready` of one version."""
    _model(runtime, name, version)
    return {"name": name, "ready": True}


@router.post(
    "/models/{name}/infer",
    responses=ERRORS,
    dependencies=[Depends(require_token)],
    openapi_extra=INFER_BODY,
)
async def infer(name: str, request: Request, runtime: Runtimes) -> Response:
    """Score a batch sent as v2 tensors (JSON, or binary after an Inference-Header)."""
    return await _exchange(request, runtime, name, VERSION)


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
    _model(runtime, name, version)
    header_length = parse_header_length(request.headers.get(HEADER_LENGTH))
    return await exchange(request, runtime, ROUTE, partial(_infer, runtime, header_length))


def _metadata(runtime: Runtime, name: str, version: str) -> dict[str, Any]:
    manifest = _model(runtime, name, version).evaluation.manifest
    return {
        "name": name,
        "versions": [VERSION],
        "platform": "onnxruntime_onnx",
        "inputs": [_tensor(e) for e in manifest["inputs"]],
        "outputs": [_tensor(e) for e in manifest["outputs"]],
    }


def _infer(
    runtime: Runtime, header_length: int | None, payload: Payload, reservation: Reservation
) -> Response:
    scorer, settings = runtime.ready_scorer(), runtime.settings
    payload.decode(settings.max_body_bytes, reservation)
    json_length = len(payload.data) if header_length is None else header_length
    refuse_long_json(min(json_length, len(payload.data)), settings.max_json_bytes)
    reservation.grow(costs.json_parse(payload.data, header_length), "body (JSON header)")
    request = decode_infer_request(payload.data, header_length)
    monitor = request.parameters.get("monitor")
    choice = runtime.monitoring(
        None if monitor is None else check_bool("parameters.monitor", monitor),
        check_source_type(request.parameters.get("source")),
    )
    requested = (
        scorer.per_sample_names if request.outputs is None else [o.name for o in request.outputs]
    )
    keep = {*requested, "focal_loss"} if choice.wanted else set(requested)
    inputs = request.inputs
    arrays = (inputs.get("logits"), inputs.get("labels"), inputs.get("alpha"))
    _check_inputs(request, scorer)
    reserve_batch(reservation, payload, arrays, scorer.row_bytes(keep), settings.max_classes)
    runtime.check_monitorable(choice, inputs["logits"].shape[1])
    batch = _batch(request, scorer)
    outputs = scorer.score(batch, keep)
    runtime.record(ROUTE, choice, len(batch.labels), outputs)
    pieces, headers = encode_infer_response(
        settings.model_name,
        VERSION,
        request.id,
        outputs,
        request.outputs,
        request.binary_outputs_default,
        lambda nbytes: reservation.grow(nbytes, "response (JSON header)"),
    )
    # the arrays, and the JSON header put together before binary outputs (it holds their data)
    retained = sum(array.nbytes for array in outputs.values()) + int(headers.get(HEADER_LENGTH, 0))
    media_type = headers.pop("Content-Type")
    return respond(pieces, reservation, retained, media_type, headers)


def _check_inputs(request: InferRequest, scorer: Scorer) -> None:
    inputs = request.inputs
    unknown = [name for name in inputs if name not in INPUTS]
    if unknown:
        raise RequestError(
            400, f"inputs: unknown input {unknown[0][:40]!r} (accepted: {', '.join(INPUTS)})"
        )
    for required in ("logits", "labels"):
        if required not in inputs:
            raise RequestError(400, f"inputs: missing required input {required!r}")
    if request.outputs is not None:
        produced = scorer.evaluation.output_names
        for j, wanted in enumerate(request.outputs):
            if wanted.name not in produced:
                raise RequestError(400, f"outputs[{j}]: no output named {wanted.name[:40]!r}")


def _batch(request: InferRequest, scorer: Scorer) -> Batch:
    inputs = request.inputs
    gamma = _scalar(inputs.get("gamma"), "gamma")
    ignore_index = _scalar(inputs.get("ignore_index"), "ignore_index")
    return scorer.defaults.batch(
        inputs["logits"], inputs["labels"], inputs.get("alpha"), gamma, ignore_index
    )


def _scalar(tensor: npt.NDArray[Any] | None, name: str) -> Any:
    if tensor is None:
        return None
    if tensor.size != 1:
        raise RequestError(
            400,
            f"inputs ({name}): expected one value (shape [] or [1]),"
            f" got shape {list(tensor.shape)}",
        )
    return tensor.reshape(()).item()


def _model(runtime: Runtime, name: str, version: str) -> Scorer:
    if name != runtime.settings.model_name:
        raise RequestError(
            404,
            f"model {name[:60]!r} not found (this server serves {runtime.settings.model_name!r})",
        )
    if version != VERSION:
        raise RequestError(
            404, f"model {name!r} has no version {version[:20]!r} (versions: {VERSION})"
        )
    return runtime.ready_scorer()


def _tensor(entry: dict[str, Any]) -> dict[str, Any]:
    shape = [d if isinstance(d, int) else -1 for d in entry["shape"]]
    return {"name": entry["name"], "datatype": DATATYPES[entry["dtype"]], "shape": shape}
