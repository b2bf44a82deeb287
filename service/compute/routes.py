"""``POST /compute``: summed statistics in, metrics out (no logits, no per-sample values).

The statistics of any number of ``/score`` responses, ``/summary`` windows or replicas, summed
field by field, give through this route the metrics of all of them together: what
``focal.compute`` does in the library, for clients without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request, Response

from focal_eval.service.artifacts import WIDTHS, Output
from focal_eval.service.compute.statistics import Summed, decode_statistics
from focal_eval.service.core.auth import require_token
from focal_eval.service.core.error_handlers import ErrorResponse
from focal_eval.service.core.errors import RequestError, bad_request, show
from focal_eval.service.core.runtime import Runtime, get_runtime
from focal_eval.service.core.tasks import BINARY, NAMES
from focal_eval.service.http.body import refuse_long_json
from focal_eval.service.http.exchange import Payload, exchange
from focal_eval.service.http.jsonio import iter_dumps
from focal_eval.service.http.responses import respond
from focal_eval.service.memory import costs
from focal_eval.service.memory.budget import Reservation

ROUTE = "/compute"
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in [
        (400, "malformed JSON"),
        (401, "FOCAL_AUTH_TOKEN is set and the bearer token is missing or wrong"),
        (413, "body over FOCAL_MAX_JSON_BYTES, or work over the memory budget"),
        (415, "a Content-Type other than application/json"),
        (422, "an unknown or missing statistic, a wrong shape, type or sign, a width out of range"),
        (503, "not ready, every slot in flight, or the memory budget busy (Retry-After)"),
    ]
}
EXAMPLE_CLASSES = 2


def build_router(evaluation: Sequence[Output], response: Any) -> APIRouter:
    """``POST /compute``; its example: statistics of two classes, shaped as ``evaluation``'s."""
    router = APIRouter(tags=["score"])
    router.add_api_route(
        ROUTE,
        compute,
        methods=["POST"],
        response_model=response,
        responses=ERRORS,
        openapi_extra=_openapi(evaluation),
        dependencies=[Depends(require_token)],
    )
    return router


def _openapi(evaluation: Sequence[Output]) -> dict[str, Any]:
    example = {
        output.name: np.full(
            [EXAMPLE_CLASSES if d in WIDTHS else int(d) for d in output.shape],
            1 if output.dtype.kind in "iu" else 0.5,
        ).tolist()
        for output in evaluation
        if output.group == "statistics"
    }
    schema = {
        "type": "object",
        "required": ["statistics"],
        "additionalProperties": False,
        "properties": {
            "task": {"enum": list(NAMES)},
            "statistics": {"type": "object"},
        },
        "examples": [{"statistics": example}],
    }
    return {
        "requestBody": {
            "required": True,
            "description": "summed statistics (the `statistics` of /score or /summary, added"
            " field by field) and optionally the task",
            "content": {"application/json": {"schema": schema}},
        }
    }


async def compute(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> Response:
    """Metrics (and per-class or per-label values) of summed statistics."""
    runtime.ready_scorers()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise RequestError(
            415,
            f"Content-Type: {show(content_type or 'missing')} is not supported;"
            " use application/json",
        )
    return await exchange(request, runtime, ROUTE, partial(_compute, runtime))


def _compute(runtime: Runtime, payload: Payload, reservation: Reservation) -> Response:
    """Parse, check, run the metrics graphs and encode: in a worker thread."""
    settings = runtime.settings
    payload.decode(settings.max_decoded_json_bytes, reservation)
    refuse_long_json(
        len(payload.data), settings.max_json_bytes, "compute the sums of fewer classes at once"
    )
    reservation.resize(reservation.nbytes + costs.json_parse(payload.data), "body (JSON)")
    try:
        document = orjson.loads(payload.data)
    except orjson.JSONDecodeError as error:
        raise bad_request(f"body: malformed JSON ({error})") from error
    payload.close()
    summed = decode_statistics(document, runtime.ready_scorers(), settings.max_classes)
    del document
    reservation.resize(_cost(summed), f"statistics ({summed.width} wide)")
    metrics = summed.scorers[0].metrics_artifact
    answer: dict[str, Any] = {
        "model": {
            "name": settings.model_name,
            "id": metrics.sha256,
            "kind": metrics.kind,
            "format": metrics.manifest["format"],
        },
        "task": summed.task,
    }
    if summed.task != BINARY:
        answer[f"num_{summed.scorers[0].task.width}"] = summed.width
    answer |= summed.metrics()
    return respond(iter_dumps(answer), reservation, 0, "application/json")


def _cost(summed: Summed) -> int:
    """The statistics held and the metrics graphs' work on them."""
    held = sum(array.nbytes for array in summed.arrays.values())
    return held + costs.metrics(summed.task, summed.width, held)
