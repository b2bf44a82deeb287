"""Liveness and readiness: ``/healthz``, ``/v2/health/live``, ``/v2/health/ready``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from focal_eval.service.core.error_handlers import ErrorResponse
from focal_eval.service.core.runtime import Runtime, get_runtime

router = APIRouter(tags=["health"])
NOT_READY: dict[int | str, dict[str, Any]] = {503: {"model": ErrorResponse}}


@router.get("/healthz", responses=NOT_READY)
async def healthz(runtime: Annotated[Runtime, Depends(get_runtime)]) -> dict[str, str]:
    """200 once the graph is loaded and has scored its warm-up batch; 503 before."""
    return {"status": "ok", "model_id": runtime.ready_scorers().model_id}


@router.get("/v2/health/live")
async def live() -> dict[str, bool]:
    """The process is up (Open Inference Protocol)."""
    return {"live": True}


@router.get("/v2/health/ready", responses=NOT_READY)
async def ready(runtime: Annotated[Runtime, Depends(get_runtime)]) -> dict[str, bool]:
    """Ready to score (Open Inference Protocol); 503 until warmed up."""
    runtime.ready_scorers()
    return {"ready": True}
