"""Bounded HTTP connections: uvicorn's httptools protocol with limits on what a client can hold.

Per connection, every resource has a bound and a timer:

- request line and headers: at most ``max_header_bytes`` bytes and ``max_headers`` fields,
  else 431; they must arrive within ``header_timeout_s`` of the request's first byte, else 408;
- idle: a connection with no request in progress (also one that never sent a byte) is closed
  after ``idle_timeout_s`` (uvicorn arms this timer only after a first response);
- writing: a client that accepts no response bytes for ``write_timeout_s`` is cut off
  (uvicorn would wait for it forever, holding the unsent response);
- count: at most ``max_connections`` are open; a new one closes the oldest idle connection,
  or is itself refused with 503 when every connection has a request in progress.

Reading a body is bounded elsewhere (the route's body timeout and the memory budget);
uvicorn already stops reading a connection once 64 KiB of its body wait unconsumed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)

Count = Callable[[str], None]


@dataclass(frozen=True)
class ConnectionLimits:
    """The per-connection bounds (settings ``FOCAL_MAX_CONNECTIONS`` etc.)."""

    max_connections: int
    max_header_bytes: int
    max_headers: int
    header_timeout_s: float
    idle_timeout_s: float
    write_timeout_s: float


class TimedFlowControl(FlowControl):
    """uvicorn's write flow control, giving up on a client that reads nothing for too long."""

    def __init__(
        self, transport: asyncio.Transport, timeout_s: float, on_timeout: Callable[[], None]
    ):
        super().__init__(transport)
        self._timeout_s = timeout_s
        self._on_timeout = on_timeout

    async def drain(self) -> None:
        """Wait until the transport accepts writes again, or cut the connection at the timeout."""
        try:
            await asyncio.wait_for(super().drain(), self._timeout_s)
        except TimeoutError:
            self._on_timeout()


def bounded_protocol(limits: ConnectionLimits, count: Count) -> type[HttpToolsProtocol]:
    """An httptools protocol class enforcing ``limits``; ``count(reason)`` on each cut."""

    class BoundedHttpProtocol(_BoundedHttpProtocol):
        pass

    BoundedHttpProtocol.limits = limits
    BoundedHttpProtocol.count = staticmethod(count)
    return BoundedHttpProtocol


class _BoundedHttpProtocol(HttpToolsProtocol):
    limits: ConnectionLimits
    count: Count

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.limits.idle_timeout_s  # type: ignore[assignment]
        self._opened = 0.0
        self._in_headers = False
        self._in_body = False
        self._received = 0  # bytes since the last request ended, outside bodies
        self._header_bytes = 0  # the request line and header fields, as parsed (CRLFs too)
        self._header_count = 0
        self._refused = False
        self._header_timer: asyncio.TimerHandle | None = None

    # --- connection lifetime -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Register, replace uvicorn's flow control, arm the idle timer, enforce the cap."""
        super().connection_made(transport)
        self.flow = TimedFlowControl(transport, self.limits.write_timeout_s, self._write_timed_out)
        self._opened = self.loop.time()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the header timer with the connection."""
        self._cancel_header_timer()
        super().connection_lost(exc)

    def timeout_keep_alive_handler(self) -> None:
        """Close an idle connection (counted as ``idle``)."""
        if not self.transport.is_closing():
            self.count("idle")
        super().timeout_keep_alive_handler()

    def _idle(self) -> bool:
        return not self._in_headers and (self.cycle is None or self.cycle.response_complete)

    def _make_room(self) -> None:
        idle = [c for c in self.connections if isinstance(c, _BoundedHttpProtocol) and c._idle()]
        idle = [c for c in idle if c is not self]
        if idle:
            oldest = min(idle, key=lambda connection: connection._opened)
            self.count("evicted")
            oldest.transport.close()
            self.connections.discard(oldest)
            return
        self.count("connection_cap")
        self._refuse(
            503,
            f"server: {self.limits.max_connections} connections are busy"
            " (FOCAL_MAX_CONNECTIONS); retry shortly",
        )

    # --- reading headers ---------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        """Feed the parser, refusing headers that grow past the limit while they arrive.

        The parser keeps a header it has not finished; counting every byte received outside
        a body bounds that before the header ends. (Exact sizes are checked as parsed.)
        """
        if self._refused:
            return
        if not self._in_body:
            self._received += len(data)
        super().data_received(data)
        if not (self._refused or self._in_body) and self._received > self.limits.max_header_bytes:
            self._too_large(f"over {self.limits.max_header_bytes} bytes (FOCAL_MAX_HEADER_BYTES)")

    def on_message_begin(self) -> None:
        """A request's first byte: start counting and timing its headers."""
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = len(" HTTP/1.1\r\n\r\n")  # the request line's end, the blank line
        self._header_count = 0
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout_s, self._header_timed_out
        )

    def on_url(self, url: bytes) -> None:
        """Count the request target with the headers."""
        self._header_bytes += len(url)
        if self._header_bytes <= self.limits.max_header_bytes:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count header fields and their bytes; keep them only while within the limits."""
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if (
            self._header_count <= self.limits.max_headers
            and self._header_bytes <= self.limits.max_header_bytes
        ):
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """Headers done: refuse too many or too large, else hand the request to the app."""
        self._in_headers = False
        self._cancel_header_timer()
        self._header_bytes += len(self.parser.get_method()) + 1  # "GET "
        if self._header_count > self.limits.max_headers:
            self._too_large(f"more than {self.limits.max_headers} fields (FOCAL_MAX_HEADERS)")
        elif self._header_bytes > self.limits.max_header_bytes:
            self._too_large(f"over {self.limits.max_header_bytes} bytes (FOCAL_MAX_HEADER_BYTES)")
        else:
            self._in_body = True
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Body bytes (ignored once the connection is refused)."""
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        """End of the request (ignored once the connection is refused)."""
        self._in_body = False
        self._received = 0
        if not self._refused:
            super().on_message_complete()

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._in_headers and not self._refused:
            self.count("header_timeout")
            self._refuse(
                408,
                f"headers: not received within {self.limits.header_timeout_s:g} s"
                " (FOCAL_HEADER_TIMEOUT_S)",
            )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_large(self, what: str) -> None:
        self.count("header_too_large")
        self._refuse(431, f"headers: {what}")

    # --- writing -----------------------------------------------------------------------------
    def _write_timed_out(self) -> None:
        """Cut a client that read nothing for ``write_timeout_s``; the response stops."""
        self.count("write_timeout")
        logger.info(
            "cut a client that read no response bytes for %g s (FOCAL_WRITE_TIMEOUT_S)",
            self.limits.write_timeout_s,
        )
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.abort()

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``{"error": message}`` with ``status`` outside the app, and close."""
        self._refused = True
        self._cancel_header_timer()
        self._unset_keepalive_if_required()
        if self.transport.is_closing():
            return
        body = orjson.dumps({"error": message})
        reason = {408: "Request Timeout", 431: "Request Header Fields Too Large"}.get(
            status, "Service Unavailable"
        )
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n"
        )
        if status == 503:
            head += "retry-after: 1\r\n"
        self.transport.write(head.encode() + b"\r\n" + body)
        self.transport.close()
