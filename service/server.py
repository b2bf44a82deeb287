"""Running the app under uvicorn: bounded connections, a clean start, a sidecar's shutdown.

``serve`` loads and warms up the graphs and derives the memory budget before it listens, so
that a bad artifact or a memory limit too small for the settings ends start-up with one line
(exit 1 and 2), not a traceback. Connections use :mod:`focal_eval.service.http.connections`' bounded
protocol. On SIGTERM (or SIGINT) the server stops accepting connections, lets requests in
flight finish (up to ``FOCAL_SHUTDOWN_TIMEOUT_S``), runs the lifespan's shutdown, and exits 0;
stock uvicorn re-raises the signal after its graceful shutdown, so the process would die of it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import uvicorn

from focal_eval.service.app import create_app
from focal_eval.service.artifacts import ArtifactError
from focal_eval.service.core.batches import warm_up
from focal_eval.service.core.scoring import Scorers
from focal_eval.service.core.settings import Settings
from focal_eval.service.http.connections import ConnectionLimits, bounded_protocol
from focal_eval.service.memory.allocator import bound_allocator
from focal_eval.service.memory.derive import request_budget

logger = logging.getLogger(__name__)

HANDLED = (signal.SIGINT, signal.SIGTERM)
RESERVED_FILES = 64  # descriptors kept for the graphs, logs and the listening socket


class Server(uvicorn.Server):
    """uvicorn's server, ending a signalled graceful shutdown with exit status 0."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Route SIGINT / SIGTERM to uvicorn's graceful exit; restore handlers afterwards."""
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The settings' connection bounds, the cap lowered to fit the open-files limit."""
    files, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = settings.max_connections
    if files != resource.RLIM_INFINITY and files - RESERVED_FILES < cap:
        cap = max(4, files - RESERVED_FILES)
        logger.warning(
            "FOCAL_MAX_CONNECTIONS lowered from %d to %d: the open-files limit is %d",
            settings.max_connections,
            cap,
            files,
        )
    return ConnectionLimits(
        max_connections=cap,
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        header_timeout_s=settings.header_timeout_s,
        idle_timeout_s=settings.idle_timeout_s,
        write_timeout_s=settings.write_timeout_s,
    )


def serve(settings: Settings) -> int:
    """Serve until signalled; the exit status.

    0 after a graceful shutdown, 1 if the artifacts cannot be served or the port cannot be
    bound, 2 if the memory limit is too small for the settings.
    """
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    bound_allocator()
    try:
        scorers = Scorers.load(settings)
        warm_up(scorers, settings)
    except ArtifactError as error:
        logger.error("cannot serve the artifacts: %s", error)
        return 1
    try:
        budget = request_budget(settings, scorers.statistics_bytes)
    except ValueError as error:
        logger.error("%s", error)
        return 2
    app = create_app(settings, scorers, budget)
    limits = connection_limits(settings)
    count_closed = app.state.runtime.telemetry.connection_closed
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # a buffered protocol, which uvicorn creates and hands to the loop like its own
        http=cast("type[asyncio.Protocol]", bounded_protocol(limits, count_closed)),
        ws="none",
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s),
    )
    server = Server(config)
    try:
        server.run()
    except SystemExit:  # uvicorn exits 3 when its lifespan or its socket fails
        logger.error("start-up failed (see above)")
        return 1
    return 0 if server.started else 1
