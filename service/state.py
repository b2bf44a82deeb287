"""What the routes share: settings, the scorer once loaded, the admission gate."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from prometheus_client import CollectorRegistry

from service.concurrency import Gate
from service.errors import RequestError
from service.monitoring import Monitor
from service.scoring import Outputs, Scorer
from service.settings import Settings
from service.telemetry import Telemetry
from service.validation import Batch, invalid


@dataclass
class Runtime:
    """Per-app state, with its own Prometheus registry.

    ``scorer`` and ``monitor`` are set, and ``ready`` true, once the lifespan has warmed up.
    """

    settings: Settings
    gate: Gate = field(init=False)
    registry: CollectorRegistry = field(init=False)
    telemetry: Telemetry = field(init=False)
    scorer: Scorer | None = None
    monitor: Monitor | None = None
    ready: bool = False

    def __post_init__(self) -> None:
        self.gate = Gate(self.settings.max_in_flight)
        self.registry = CollectorRegistry()
        self.telemetry = Telemetry(self.registry)

    def ready_scorer(self) -> Scorer:
        """The scorer, or a 503 while the graph is not loaded and warmed up."""
        if not self.ready or self.scorer is None:
            raise RequestError(
                503,
                "server: not ready (the evaluation graph is loading)",
                headers={"Retry-After": "1"},
            )
        return self.scorer

    def monitoring(self, monitor: bool | None, source: str | None) -> tuple[bool, str]:
        """Whether a request feeds the monitor, and as which source (request or default).

        Raises:
            RequestError: 422 for a source outside ``FOCAL_MONITOR_SOURCES``.
        """
        sources = self.settings.monitor_sources
        if source is not None and source not in sources:
            raise invalid(
                f"source: {source[:64]!r} is not one of {sources} (FOCAL_MONITOR_SOURCES)"
            )
        return (self.settings.monitor_default if monitor is None else monitor), (
            source or sources[0]
        )

    def record(self, route: str, choice: tuple[bool, str], batch: Batch, outputs: Outputs) -> bool:
        """Count a scored batch, and feed the monitor if chosen; whether it was monitored."""
        self.telemetry.samples_scored.labels(route).inc(len(batch.labels))
        wanted, source = choice
        return wanted and self.ready_monitor().observe(source, batch, outputs)

    def ready_monitor(self) -> Monitor:
        """The monitor, or a 503 before the lifespan has created it."""
        self.ready_scorer()
        assert self.monitor is not None
        return self.monitor


def get_runtime(request: Request) -> Runtime:
    """FastAPI dependency: the app's :class:`Runtime`."""
    runtime: Runtime = request.app.state.runtime
    return runtime
