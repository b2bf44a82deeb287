"""The app factory: ``create_app(settings)``; the graphs load and warm up in the lifespan."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.errors import install_error_handlers
from service.monitoring import Monitor
from service.routes import health, monitoring, score, v2
from service.scoring import Scorer
from service.settings import Settings, get_settings
from service.state import Runtime
from service.telemetry import TelemetryMiddleware

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A scoring app for ``settings`` (default: from the environment).

    The lifespan loads and verifies the artifacts, then scores a warm-up batch before the
    server reports ready; a missing or corrupt artifact fails start-up with its error.
    """
    runtime = Runtime(settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = runtime.settings
        scorer = runtime.scorer = Scorer.load(settings)
        scorer.warm_up()
        runtime.monitor = Monitor(
            scorer.compute_metrics,
            scorer.statistics_names,
            settings.monitor_max_classes,
            settings.window_samples,
            settings.window_seconds,
        )
        runtime.registry.register(runtime.monitor)
        runtime.telemetry.build_info.labels(
            app.version, scorer.model_id, scorer.evaluation.kind, f"{scorer.defaults.gamma:g}"
        ).set(1)
        runtime.ready = True
        logger.info("ready: model %s", runtime.scorer.model_id[:12])
        try:
            yield
        finally:
            runtime.ready = False
            runtime.registry.unregister(runtime.monitor)

    app = FastAPI(
        title="focal-eval",
        version=importlib.metadata.version("focal-eval"),
        summary="Focal loss and class-balanced metrics for submitted logits and labels.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    for module in (health, score, v2, monitoring):
        app.include_router(module.router)
    app.add_middleware(TelemetryMiddleware, telemetry=runtime.telemetry)
    return app
