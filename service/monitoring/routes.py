"""Monitoring: ``GET /metrics`` (Prometheus), ``GET /summary`` (JSON), ``POST /reset``."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from focal_eval.service.core.auth import require_token, require_token_for_monitoring
from focal_eval.service.core.error_handlers import ErrorResponse
from focal_eval.service.core.runtime import Runtime, get_runtime
from focal_eval.service.http.jsonio import dumps

router = APIRouter(tags=["monitoring"])
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"model": ErrorResponse}}
Runtimes = Annotated[Runtime, Depends(get_runtime)]


@router.get(
    "/metrics",
    dependencies=[Depends(require_token_for_monitoring)],
    responses={200: {"content": {"text/plain": {}}}, **UNAUTHORIZED},
    response_class=Response,
)
async def metrics(runtime: Runtimes) -> Response:
    """Prometheus text format: service metrics, quality counters, window gauges."""
    text = await anyio.to_thread.run_sync(
        generate_latest, runtime.registry, limiter=runtime.monitor_limiter
    )
    return Response(text, media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/summary", dependencies=[Depends(require_token_for_monitoring)], responses=UNAUTHORIZED
)
async def summary(runtime: Runtimes) -> Response:
    """Per source: the window's and the lifetime's samples, metrics and additive statistics.

    Statistics from several replicas add up; their sum through ``compute`` gives the metrics
    of everything the replicas saw.
    """
    monitor, model_id = runtime.ready_monitor(), runtime.ready_scorers().model_id

    def summarised() -> bytes:  # runs the metrics graph: off the event loop
        return dumps({"model_id": model_id, "sources": monitor.summary()})

    content = await anyio.to_thread.run_sync(summarised, limiter=runtime.monitor_limiter)
    return Response(content, media_type="application/json")


@router.post(
    "/reset",
    dependencies=[Depends(require_token)],
    responses={**UNAUTHORIZED, 422: {"model": ErrorResponse}},
)
async def reset(
    runtime: Runtimes,
    source: Annotated[
        str | None, Query(description="only this source (default: every source)")
    ] = None,
) -> dict[str, str]:
    """Release windows and lifetime summaries; Prometheus counters keep counting.

    A released source takes the class count of its next batch.
    """
    if source is not None:
        runtime.monitoring(None, source)  # 422 for a source outside FOCAL_MONITOR_SOURCES
    runtime.ready_monitor().reset(source)
    return {"status": "reset"}
