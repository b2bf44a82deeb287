"""Open Inference Protocol (KServe v2) REST routes, with Triton's binary tensor extension.

Inputs: ``logits`` (N, C) and ``labels`` (N) required; ``alpha`` (C), ``gamma`` and
``ignore_index`` (shape [] or [1]) optional, defaulting as on ``/score``; request parameters
``monitor`` (bool) and ``source`` (str) as on ``/score``. Outputs: every output of the
evaluation graph, by name; binary or JSON as the client asks. Errors are
``{"error": "..."}``: 400 for protocol errors, 404 for an unknown model, 422 for invalid values.
"""

from __future__ import annotations

import importlib.metadata
from typing import Annotated, Any

import numpy.typing as npt
from fastapi import APIRouter, Depends, Request, Response

from service.auth import require_token
from service.errors import RequestError
from service.receive import receive
from service.schemas import ErrorResponse
from service.scoring import Scorer
from service.state import Runtime, get_runtime
from service.v2_decode import InferRequest, decode_infer_request, parse_header_length
from service.v2_encode import encode_infer_response
from service.v2_tensors import HEADER_LENGTH
from service.validation import (
    Batch,
    check_bool,
    check_source_type,
)

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
VERSION = "1"
INPUTS = ("logits", "labels", "alpha", "gamma", "ignore_index")
DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64"}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse},
    401: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
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


@router.get("/models/{name}", responses=ERRORS)
@router.get("/models/{name}/versions/{version}", responses=ERRORS)
async def model_metadata(name: str, runtime: Runtimes, version: str = VERSION) -> dict[str, Any]:
    """Inputs and outputs of the evaluation graph, as v2 tensor metadata (-1: dynamic)."""
    scorer = _model(runtime, name, version)
    manifest = scorer.evaluation.manifest
    return {
        "name": name,
        "versions": [VERSION],
        "platform": "onnxruntime_onnx",
        "inputs": [_tensor(e) for e in manifest["inputs"]],
        "outputs": [_tensor(e) for e in manifest["outputs"]],
    }


@router.get("/models/{name}/ready", responses=ERRORS)
@router.get("/models/{name}/versions/{version}/ready", responses=ERRORS)
async def model_ready(name: str, runtime: Runtimes, version: str = VERSION) -> dict[str, Any]:
    """200 when the model is loaded and warmed up."""
    _model(runtime, name, version)
    return {"name": name, "ready": True}


@router.post("/models/{name}/infer", responses=ERRORS, dependencies=[Depends(require_token)])
@router.post(
    "/models/{name}/versions/{version}/infer",
    responses=ERRORS,
    dependencies=[Depends(require_token)],
)
async def infer(name: str, request: Request, runtime: Runtimes, version: str = VERSION) -> Response:
    """Score a batch sent as v2 tensors (JSON, or binary after an Inference-Header)."""
    _model(runtime, name, version)
    header_length = parse_header_length(request.headers.get(HEADER_LENGTH))
    async with runtime.gate.admit():
        body = await receive(request, runtime.settings)
        content, headers = await runtime.gate.run(_infer, runtime, body, header_length)
    return Response(content, headers=headers)


def _infer(
    runtime: Runtime, body: bytes | bytearray, header_length: int | None
) -> tuple[bytes, dict[str, str]]:
    scorer = runtime.ready_scorer()
    request = decode_infer_request(body, header_length)
    batch = _batch(request, scorer)
    monitor = request.parameters.get("monitor")
    choice = runtime.monitoring(
        None if monitor is None else check_bool("parameters.monitor", monitor),
        check_source_type(request.parameters.get("source")),
    )
    outputs = scorer.score(batch)
    runtime.record("/v2/models/{name}/infer", choice, batch, outputs)
    return encode_infer_response(
        runtime.settings.model_name,
        VERSION,
        request.id,
        outputs,
        request.outputs,
        request.binary_outputs_default,
    )


def _batch(request: InferRequest, scorer: Scorer) -> Batch:
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
