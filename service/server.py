"""Running the app under uvicorn, with a shutdown that suits a sidecar.

On SIGTERM (or SIGINT) the server stops accepting connections, lets requests in flight finish
(up to ``FOCAL_SHUTDOWN_TIMEOUT_S``), runs the lifespan's shutdown, and exits 0. Stock uvicorn
re-raises the signal after its graceful shutdown, so the process would die of it instead.
"""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from service.app import create_app
from service.settings import Settings

HANDLED = (signal.SIGINT, signal.SIGTERM)


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


def serve(settings: Settings) -> int:
    """Serve until signalled; 0 after a graceful shutdown, 1 if start-up failed."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s),
    )
    server = Server(config)
    server.run()
    return 0 if server.started else 1
