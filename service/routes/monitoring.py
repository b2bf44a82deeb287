"""Monitoring: ``GET /metrics`` (Prometheus), ``GET /summary`` (JSON), ``POST /reset``."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.auth import require_token, require_token_for_monitoring
from service.jsonio import dumps
from service.schemas import ErrorResponse
from service.state import Runtime, get_runtime

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
    text = await anyio.to_thread.run_sync(generate_latest, runtime.registry)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/summary", dependencies=[Depends(require_token_for_monitoring)], responses=UNAUTHORIZED
)
async def summary(runtime: Runtimes) -> Response:
    """Per source: the window's and the lifetime's samples, metrics and additive statistics.

    Statistics from several replicas add up; their sum through ``compute`` gives the metrics
    of everything the replicas saw.
    """
    monitor = runtime.ready_monitor()
    document = {"model_id": runtime.ready_scorer().model_id, "sources": monitor.summary()}
    content = await anyio.to_thread.run_sync(dumps, document)
    return Response(content, media_type="application/json")


@router.post("/reset", dependencies=[Depends(require_token)], responses=UNAUTHORIZED)
async def reset(runtime: Runtimes) -> dict[str, str]:
    """Clear every window and the lifetime summary; Prometheus counters keep counting."""
    runtime.ready_monitor().reset()
    return {"status": "reset"}
