"""The app factory: ``create_app(settings)``; the graphs load and warm up in the lifespan."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from focal_eval.service.artifacts import artifact_outputs
from focal_eval.service.compute import routes as compute
from focal_eval.service.core import health
from focal_eval.service.core.batches import warm_up
from focal_eval.service.core.error_handlers import install_error_handlers
from focal_eval.service.core.runtime import Runtime
from focal_eval.service.core.scoring import Scorers
from focal_eval.service.core.settings import Settings, get_settings
from focal_eval.service.dashboard import routes as dashboard
from focal_eval.service.inference import rest
from focal_eval.service.memory.budget import MemoryBudget, mib
from focal_eval.service.memory.derive import DerivedBudget, request_budget
from focal_eval.service.monitoring import routes as monitoring
from focal_eval.service.monitoring.monitor import Monitor, countings
from focal_eval.service.monitoring.telemetry import TelemetryMiddleware
from focal_eval.service.score import routes as score
from focal_eval.service.score.schemas import response_models

logger = logging.getLogger(__name__)
DOCS_ASSETS = "/docs/assets"


def create_app(
    settings: Settings | None = None,
    scorers: Scorers | None = None,
    budget: DerivedBudget | None = None,
) -> FastAPI:
    """A scoring app for ``settings`` (default: from the environment).

    The lifespan loads and verifies the artifacts and scores a warm-up batch of each task
    (unless given ``scorers`` that have), derives the memory budget (unless given one), then
    reports ready; a missing or corrupt artifact fails start-up with its error.
    """
    runtime = Runtime(settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = runtime.settings
        loaded = scorers
        if loaded is None:
            loaded = Scorers.load(settings)
            warm_up(loaded, settings)
        derived = budget or request_budget(settings, loaded.statistics_bytes)
        runtime.scorers = loaded
        runtime.budget = MemoryBudget(derived.bytes)
        runtime.monitor = Monitor(
            countings(loaded),
            settings.monitor_max_classes,
            settings.window_samples,
            settings.window_seconds,
            settings.window_buckets,
        )
        runtime.registry.register(runtime.monitor)
        telemetry = runtime.telemetry
        telemetry.memory_budget.set(derived.bytes)
        telemetry.memory_reserved.set_function(
            lambda: runtime.budget.reserved if runtime.budget else 0
        )
        multiclass = loaded.multiclass
        telemetry.build_info.labels(
            app.version,
            multiclass.model_id,
            multiclass.evaluation.kind,
            f"{multiclass.defaults['gamma']:g}",
            multiclass.fast_path.state,
        ).set(1)
        for scorer in loaded.available():
            # ranking is served by the multi-class scorer's fused graph of both
            path = multiclass.ranking_path if scorer is loaded.ranking else scorer.fast_path
            telemetry.fast_path.labels(scorer.task.name).state(path.state)
        runtime.ready = True
        logger.info("memory budget for requests: %s (%s)", mib(derived.bytes), derived.origin)
        logger.info("ready: model %s", loaded.model_id[:12])
        try:
            yield
        finally:
            runtime.ready = False
            runtime.registry.unregister(runtime.monitor)

    # /docs and /redoc with their assets served by the app (no CDN: the sidecar may be offline)
    app = FastAPIOffline(
        title="focal-eval",
        version=importlib.metadata.version("focal-eval"),
        summary="Focal loss and class-balanced metrics for submitted logits and labels.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},  # no badge from validator.swagger.io
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    outputs = (
        {s.evaluation.kind: s.evaluation.outputs for s in scorers.available()}
        if scorers
        else artifact_outputs(runtime.settings.artifact_dir)
    )
    app.include_router(health.router)
    score_model, compute_model = response_models(outputs)
    app.include_router(score.build_router(score_model))
    app.include_router(compute.build_router(outputs.get("evaluation", []), compute_model))
    app.include_router(rest.router)
    app.include_router(monitoring.router)
    app.include_router(dashboard.router)
    app.add_middleware(TelemetryMiddleware, telemetry=runtime.telemetry)
    return app
