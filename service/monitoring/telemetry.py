"""Service metrics: requests, errors, latency, body sizes, in-flight, samples, memory.

A pure ASGI middleware records every HTTP request under its route template (``/score``,
``/v2/models/{name}/infer``; ``unmatched`` for 404s), in the app's own registry. A client
that hangs up before its answer is recorded with status 499 (nginx's "client closed request")
and counted in ``focal_eval_client_disconnects_total``, never as a server error. Connections
cut by a limit (:mod:`focal_eval.service.http.connections`) are counted by reason.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from focal_eval.service.core.errors import CLIENT_CLOSED
from focal_eval.service.core.fast_path import STATES as FAST_PATH_STATES
from focal_eval.service.http.sink import watch_sinks
from focal_eval.service.monitoring import PREFIX

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SIZE_BUCKETS = tuple(float(4**k) for k in range(5, 16))  # 1 KiB .. 1 GiB


class Telemetry:
    """The service's own metrics, in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            f"{PREFIX}_requests", "HTTP requests", ["route", "method", "status"], registry=registry
        )
        self.errors = Counter(
            f"{PREFIX}_request_errors",
            "HTTP requests answered 4xx or 5xx",
            ["route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "time to answer",
            ["route"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.body_size = Histogram(
            f"{PREFIX}_request_body_bytes",
            "request body size as received",
            ["route"],
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_requests_in_flight", "HTTP requests being answered", registry=registry
        )
        self.samples_scored = Counter(
            f"{PREFIX}_samples_scored",
            "rows scored, monitored or not",
            ["route"],
            registry=registry,
        )
        self.client_disconnects = Counter(
            f"{PREFIX}_client_disconnects",
            "requests whose client hung up before the answer (recorded with status 499)",
            ["route"],
            registry=registry,
        )
        self.connections_closed = Counter(
            f"{PREFIX}_connections_closed",
            "connections the server closed: idle, evicted (room for a new one), connection_cap,"
            " header_timeout, header_too_large, write_timeout",
            ["reason"],
            registry=registry,
        )
        self.request_memory = Histogram(
            f"{PREFIX}_request_memory_bytes",
            "the most memory a request reserved against the budget",
            ["route"],
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.memory_budget = Gauge(
            f"{PREFIX}_memory_budget_bytes",
            "the memory budget for request work (FOCAL_MEMORY_LIMIT or derived)",
            registry=registry,
        )
        self.memory_reserved = Gauge(
            f"{PREFIX}_memory_reserved_bytes",
            "memory reserved by requests and unsent responses now",
            registry=registry,
        )
        self.build_info = Gauge(
            f"{PREFIX}_build_info",
            "the evaluation graph served (value 1); fast_path: the multi-class scorer's",
            ["version", "model_id", "kind", "gamma", "fast_path"],
            registry=registry,
        )
        self.fast_path = Enum(
            f"{PREFIX}_fast_path",
            "whether the fused kernel scores the task's batches (live), or why not",
            ["task"],
            states=list(FAST_PATH_STATES),
            registry=registry,
        )

    def connection_closed(self, reason: str) -> None:
        """Count a connection the server closed, by reason."""
        self.connections_closed.labels(reason).inc()


class TelemetryMiddleware:
    """Times and counts every HTTP request."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Record the request around the wrapped app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        received = 0
        start = time.perf_counter()
        sinks = watch_sinks(scope)

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.telemetry.in_flight.inc()
        try:
            await self.app(scope, counting_receive, status_send)
        finally:
            self.telemetry.in_flight.dec()
            if sinks:
                received = sum(sink.arrived for sink in sinks)
            self._record(scope, status, received, time.perf_counter() - start)

    def _record(self, scope: Scope, status: int, received: int, seconds: float) -> None:
        route: Any = scope.get("route")
        path = getattr(route, "path", "unmatched")
        self.telemetry.requests.labels(path, scope["method"], str(status)).inc()
        if status == CLIENT_CLOSED:
            self.telemetry.client_disconnects.labels(path).inc()
        elif status >= 400:
            self.telemetry.errors.labels(path, str(status)).inc()
        self.telemetry.duration.labels(path).observe(seconds)
        self.telemetry.body_size.labels(path).observe(received)
