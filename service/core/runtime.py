"""What the routes share: settings, the scorer and monitor once loaded, the gate, the budget."""

from __future__ import annotations

from dataclasses import dataclass, field

from anyio import CapacityLimiter
from fastapi import Request
from prometheus_client import CollectorRegistry

from focal_eval.service.core.errors import RequestError, invalid, show
from focal_eval.service.core.gate import Gate
from focal_eval.service.core.scoring import Outputs, Scorers
from focal_eval.service.core.settings import Settings
from focal_eval.service.http.buffers import BodyBuffers
from focal_eval.service.memory.allocator import SERVER_MMAP_THRESHOLD
from focal_eval.service.memory.budget import MemoryBudget, Reservation
from focal_eval.service.monitoring.monitor import Monitor
from focal_eval.service.monitoring.telemetry import Telemetry


@dataclass(frozen=True)
class MonitorChoice:
    """Whether a request feeds the monitor, as which source, and whether it asked to."""

    wanted: bool
    source: str
    explicit: bool  # the request said monitor=true: an unmonitorable batch is then a 422


@dataclass
class Runtime:
    """Per-app state, with its own Prometheus registry.

    ``scorers``, ``monitor`` and ``budget`` are set, and ``ready`` true, once the lifespan has
    warmed up.
    """

    settings: Settings
    gate: Gate = field(init=False)
    # /metrics and /summary sum window statistics one at a time (the monitor's memory bound)
    monitor_limiter: CapacityLimiter = field(init=False)
    registry: CollectorRegistry = field(init=False)
    telemetry: Telemetry = field(init=False)
    buffers: BodyBuffers = field(init=False)
    scorers: Scorers | None = None
    monitor: Monitor | None = None
    budget: MemoryBudget | None = None
    ready: bool = False

    def __post_init__(self) -> None:
        self.gate = Gate(self.settings.max_in_flight)
        self.monitor_limiter = CapacityLimiter(1)
        self.registry = CollectorRegistry()
        self.telemetry = Telemetry(self.registry)
        self.buffers = BodyBuffers(self.settings.body_buffer_bytes, SERVER_MMAP_THRESHOLD)

    def ready_scorers(self) -> Scorers:
        """The scorers, or a 503 while the graphs are not loaded and warmed up."""
        if not self.ready or self.scorers is None:
            raise RequestError(
                503,
                "server: not ready (the evaluation graph is loading)",
                headers={"Retry-After": "1"},
            )
        return self.scorers

    def ready_monitor(self) -> Monitor:
        """The monitor, or a 503 before the lifespan has created it."""
        self.ready_scorers()
        assert self.monitor is not None
        return self.monitor

    def reservation(self, route: str) -> Reservation:
        """A new reservation against the memory budget, its peak recorded per ``route``."""
        self.ready_scorers()
        assert self.budget is not None
        return self.budget.reservation(self.telemetry.request_memory.labels(route).observe)

    def monitoring(self, monitor: bool | None, source: str | None) -> MonitorChoice:
        """Whether a request feeds the monitor, and as which source (request or default).

        Raises:
            RequestError: 422 for a source outside ``FOCAL_MONITOR_SOURCES``.
        """
        sources = self.settings.monitor_sources
        if source is not None and source not in sources:
            raise invalid(
                f"source: {show(source)} is not one of {show(sources)} (FOCAL_MONITOR_SOURCES)"
            )
        wanted = self.settings.monitor_default if monitor is None else monitor
        return MonitorChoice(wanted, source or sources[0], monitor is True)

    def check_monitorable(self, choice: MonitorChoice, task: str, width: int) -> None:
        """Refuse (422) a batch that asked to be monitored but cannot be, before scoring it."""
        if choice.explicit:
            refusal = self.ready_monitor().refusal(choice.source, task, width)
            if refusal is not None:
                raise invalid(f"monitor: {refusal.message}; or send monitor=false")

    def record(
        self, route: str, choice: MonitorChoice, task: str, rows: int, outputs: Outputs
    ) -> str | None:
        """Count a scored batch and feed the monitor if chosen.

        Returns:
            None when the batch was monitored or not meant to be; else why it was not
            (``too_many_classes``, ``class_count`` or ``task``, counted in
            ``focal_eval_unmonitored_batches_total``).
        """
        self.telemetry.samples_scored.labels(route).inc(rows)
        if not choice.wanted:
            return None
        return self.ready_monitor().observe(choice.source, task, outputs)


async def get_runtime(request: Request) -> Runtime:
    """FastAPI dependency: the app's :class:`Runtime` (a coroutine: no worker thread for it)."""
    runtime: Runtime = request.app.state.runtime
    return runtime
