"""Bounded HTTP connections: uvicorn's httptools protocol with limits on what a client can hold.

Per connection, every resource has a bound and a timer:

- request line and headers: at most ``max_header_bytes`` bytes and ``max_headers`` fields,
  else 431; they must arrive within ``header_timeout_s`` of the request's first byte, else 408;
- idle: a connection with no request in progress (also one that never sent a byte, or sends
  only empty lines) is closed after ``idle_timeout_s``, dropping response bytes its client
  never took (uvicorn arms this timer only after a first response, and waits for a client
  that does not read);
- writing: a client that accepts no response bytes for ``write_timeout_s`` is cut off
  (uvicorn would wait for it forever, holding the unsent response);
- count: at most ``max_connections`` are open; a new one closes the oldest idle connection,
  or is itself refused with 503 when every connection has a request in progress;
- pipelining: at most ``MAX_PIPELINED`` requests wait behind the one in progress; a client
  that sends more is read no further and closed once the current response is sent;
- reading: every socket is read into one buffer of ``READ_BYTES`` that the server's
  connections share (its event loop reads one socket at a time, and each read is parsed, what
  is kept copied, before the next), not into a fresh allocation per read; once a route has
  attached a sink to a body of declared length (:mod:`focal_eval.service.http.sink`), the
  rest of that body is read straight into the sink's buffer, ``READ_BYTES`` at most per read,
  each charged before the read (docs/numerics.md);
- a response sent before its request's body ended (an error) ends the connection, so a
  client cannot keep streaming a body nobody reads: the answer says ``connection: close``
  and is followed by end of file, and what the client still sends is dropped for at most
  ``LINGER_S`` before the connection closes (closed at once, the reset that the arriving
  bytes cause could destroy the answer before the client reads it); chunked trailers count
  as headers.

Reading a body is bounded elsewhere (the route's body timeout and the memory budget);
uvicorn already stops reading a connection once 64 KiB of its body wait unconsumed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from focal_eval.service.http.sink import BODY_SINK, Attach, BodySink

logger = logging.getLogger(__name__)

Count = Callable[[str], None]
MAX_PIPELINED = 2  # requests queued behind one in progress; a client sending more is closed
READ_BYTES = 256 * 1024  # what one read takes from a socket (asyncio's own read size)
LINGER_S = 2.0  # after an answer sent before its body ended, what the client sends is dropped


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
        except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11
            self._on_timeout()


def bounded_protocol(limits: ConnectionLimits, count: Count) -> type[BufferedSide]:
    """A protocol class for uvicorn enforcing ``limits``; ``count(reason)`` on each cut.

    Each instance is the buffered side of an httptools connection
    (:class:`_BoundedHttpProtocol`), which is what uvicorn hands to the event loop.
    """
    attributes = {
        "limits": limits,
        "count": count,
        # one per server: its event loop reads one socket at a time (a loop in another
        # thread of the process gets its own)
        "_read_buffer": memoryview(bytearray(READ_BYTES)),
    }
    connection = type("BoundedHttpProtocol", (_BoundedHttpProtocol,), attributes)
    return type("BoundedBufferedSide", (BufferedSide,), {"connection_class": connection})


class BufferedSide(asyncio.BufferedProtocol):
    """What the event loop sees of a connection: a buffered protocol, handing on every event.

    uvloop reads into ``get_buffer`` only for a protocol that is not an ``asyncio.Protocol``;
    uvicorn's protocol is one, so uvloop would hand it a fresh ``bytes`` per read (asyncio's
    own loop reads into the buffers either way).
    """

    connection_class: type[_BoundedHttpProtocol]

    def __init__(self, **kwargs: Any) -> None:
        self.connection = self.connection_class(**kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The connection's :meth:`~_BoundedHttpProtocol.connection_made`."""
        self.connection.connection_made(transport)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection's :meth:`~_BoundedHttpProtocol.connection_lost`."""
        self.connection.connection_lost(exc)

    def eof_received(self) -> None:
        """The connection's ``eof_received`` (the transport then closes)."""
        self.connection.eof_received()

    def pause_writing(self) -> None:
        """The connection's ``pause_writing``."""
        self.connection.pause_writing()

    def resume_writing(self) -> None:
        """The connection's ``resume_writing``."""
        self.connection.resume_writing()

    def get_buffer(self, sizehint: int) -> memoryview:
        """The connection's :meth:`~_BoundedHttpProtocol.get_buffer`."""
        return self.connection.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        """The connection's :meth:`~_BoundedHttpProtocol.buffer_updated`."""
        self.connection.buffer_updated(nbytes)


class _BoundedHttpProtocol(HttpToolsProtocol):
    limits: ConnectionLimits
    count: Count
    _read_buffer: memoryview  # shared by the server's connections (bounded_protocol)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.limits.idle_timeout_s  # type: ignore[assignment]
        self._opened = 0.0
        self._idle_since = 0.0
        self._in_headers = False
        self._in_body = False
        self._body_of: RequestResponseCycle | None = None  # the request whose body is arriving
        self._sink: BodySink | None = None  # where _body_of's body goes, if its route attached one
        self._direct = False  # whether the rest of _sink's body is read straight into it
        self._landing = False  # whether the read under way goes into the sink's room
        self._received = 0  # bytes outside bodies since the last request ended
        self._unparsed = 0  # bytes in a body's phase since its last body bytes (trailers)
        self._header_bytes = 0  # the request line and header fields, as parsed (CRLFs too)
        self._header_count = 0
        self._refused = False
        self._answered_early = False  # a response began before its request's body ended
        self._lost = False
        self._header_timer: asyncio.TimerHandle | None = None

    # --- connection lifetime -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Register, replace uvicorn's flow control, arm the idle timer, enforce the cap."""
        super().connection_made(transport)
        self.flow = TimedFlowControl(transport, self.limits.write_timeout_s, self._write_timed_out)
        self._opened = self.loop.time()
        self._arm_idle_timer()
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the header timer with the connection."""
        self._lost = True
        self._cancel_header_timer()
        super().connection_lost(exc)

    def timeout_keep_alive_handler(self) -> None:
        """Close an idle connection, dropping response bytes its client never took."""
        if self.transport.is_closing():
            return
        self.count("idle")
        if self.transport.get_write_buffer_size():
            self.transport.abort()  # close() would wait for a client that does not read
        else:
            self.transport.close()

    def on_response_complete(self) -> None:
        """After a response: close if its request's body is still arriving, time a next head.

        The body arriving may be the next request's instead (sent once the client had the
        whole response, before the server's last, empty write of it): that one is wanted.
        """
        if self._answered_early:
            self.pipeline.clear()  # after `connection: close`, nothing more is answered here
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self._answered_early:  # the rest of the body is unwanted
            self.count("unread_body")
            self._linger()
        elif self._in_headers:  # a pipelined request's head, read before this response ended
            self._arm_header_timer()
        elif self._idle():
            self._arm_idle_timer()

    def _linger(self) -> None:
        """End an early answer's connection without losing the answer to a reset.

        Closing with unread bytes makes the kernel reset the connection, and the reset can
        destroy the answer before the client reads it (a 503 for a body that does not fit
        now, sent while the client still uploads). So the answer is followed by end of file,
        what the client still sends is read and dropped (never parsed, never kept) for at most
        ``LINGER_S``, and the connection closes when the client closes its side or then.
        """
        self._read_no_more()
        self.flow.resume_reading()
        try:
            if self.transport.can_write_eof():
                self.transport.write_eof()
        except OSError:  # already reset
            self.transport.abort()
            return
        self.loop.call_later(LINGER_S, self._end_linger)

    def _read_no_more(self) -> None:
        """Drop what the client sends from now on (``data_received``), with no timer to wait for."""
        self._refused = True
        self._cancel_header_timer()
        self._unset_keepalive_if_required()

    def _end_linger(self) -> None:
        """Cut the connection unless it is gone (a close still flushing is cut too)."""
        if not self._lost:
            self.transport.abort()

    def _arm_idle_timer(self, since: float | None = None) -> None:
        """Close the connection ``idle_timeout_s`` after ``since`` (default: now)."""
        self._unset_keepalive_if_required()
        self._idle_since = self.loop.time() if since is None else since
        self.timeout_keep_alive_task = self.loop.call_at(
            self._idle_since + self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def _responding(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _idle(self) -> bool:
        """No request in progress; a connection lingering after an early answer counts too."""
        if self._answered_early:  # once its answer is sent it only drops bytes: evictable
            return not self._responding()
        return not (self._in_headers or self._in_body or self._responding())

    def _make_room(self) -> None:
        """Close the oldest idle connection to admit this one, or refuse this one (503)."""
        idle = [
            connection
            for connection in self.connections
            if isinstance(connection, _BoundedHttpProtocol)
            and connection is not self
            and connection._idle()
            and not connection.transport.is_closing()
        ]
        if idle:
            self.count("evicted")
            min(idle, key=lambda connection: connection._opened).transport.abort()
            return
        self.count("connection_cap")
        self._refuse(
            503,
            f"server: {self.limits.max_connections} connections are busy"
            " (FOCAL_MAX_CONNECTIONS); retry shortly",
        )

    # --- reading -----------------------------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        """Where asyncio reads a socket into: a sunk body's room, else the shared buffer.

        Nothing holds either past the read.
        """
        sink = self._sink
        if self._direct and sink is not None and self._in_body and not self._refused:
            room = sink.room(READ_BYTES)
            if room is not None:
                self._landing = True
                return room
            self._direct = False
            if self.cycle is not None:
                self.cycle.message_event.set()  # the route raises the sink's error
        self._landing = False
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        """The bytes just read: kept by the sink they landed in, else parsed at once."""
        if not self._landing:
            self.data_received(self._read_buffer[:nbytes])  # type: ignore[arg-type]
            return
        self._landing = False
        sink = self._sink
        assert sink is not None
        sink.landed(nbytes)
        if sink.received == len(sink.buffer):
            self._end_read_body()
        elif len(self.connections) > 1:
            self._pace(sink)

    def _end_read_body(self) -> None:
        """A body read past the parser is complete: a fresh parser for the next request.

        The parser still expects the bytes it never saw; it holds nothing else between
        requests. After a request that closes the connection (``Connection: close``, HTTP/1.0)
        what the client still sends is dropped, as the old parser would have dropped it.
        """
        self._direct = False
        keep_alive = self.parser.should_keep_alive()
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.on_message_complete()
        if not keep_alive:
            self._read_no_more()

    def data_received(self, data: bytes) -> None:
        """Feed the parser, refusing a head (or trailers) that grows past the limit.

        The parser keeps a header line it has not finished: counting the bytes received
        outside bodies (and, within one, since its last body bytes) bounds that before the
        line ends; exact sizes are checked as headers are parsed. Bytes that start no request
        (bare CRLFs) do not keep an idle connection open.
        """
        if self._refused:
            return
        if self._in_body:
            self._unparsed += len(data)
        else:
            self._received += len(data)
        super().data_received(data)
        if self._refused or self.transport.is_closing():
            return
        limit = self.limits.max_header_bytes
        if self._unparsed > limit if self._in_body else self._received > limit:
            self._too_large(f"over {limit} bytes (FOCAL_MAX_HEADER_BYTES)")
        elif self._idle():  # bytes that start no request do not postpone the idle deadline
            self._arm_idle_timer(since=self._idle_since)

    def on_message_begin(self) -> None:
        """A request's first byte: start counting (and, unless pipelined, timing) its head."""
        if self._refused:  # the rest of what this client sent is not read
            return
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = len(" HTTP/1.1\r\n\r\n")  # the request line's end, the blank line
        self._header_count = 0
        if len(self.pipeline) >= MAX_PIPELINED:
            self.count("pipelined")
            self._refused = True  # read no more of it: close once the current response ends
            if self.cycle is not None:
                self.cycle.keep_alive = False
        elif not self._responding():
            self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        """Count the request target with the headers."""
        self._header_bytes += len(url)
        if self._in_headers and self._header_bytes <= self.limits.max_header_bytes:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count header fields and their bytes; keep them only while within the limits."""
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if (
            self._in_headers
            and self._header_count <= self.limits.max_headers
            and self._header_bytes <= self.limits.max_header_bytes
        ):
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """Headers done: refuse too many or too large, else hand the request to the app."""
        if self._refused or not self._in_headers:
            return
        self._in_headers = False
        self._cancel_header_timer()
        self._header_bytes += len(self.parser.get_method()) + 1  # "GET "
        if self._header_count > self.limits.max_headers:
            self._too_large(f"more than {self.limits.max_headers} fields (FOCAL_MAX_HEADERS)")
        elif self._header_bytes > self.limits.max_header_bytes:
            self._too_large(f"over {self.limits.max_header_bytes} bytes (FOCAL_MAX_HEADER_BYTES)")
        else:
            self._in_body = True
            self._unparsed = 0
            before = self.cycle
            super().on_headers_complete()
            if self.cycle is not None and self.cycle is not before:
                self._body_of = self.cycle
                self._sink = None
                self.cycle.send = self._closing_early(self.cycle)  # type: ignore[method-assign, assignment]
                offer: dict[object, object] = {"attach": self._attacher()}
                self.scope["extensions"] = {**self.scope.get("extensions", {}), BODY_SINK: offer}

    def on_body(self, body: bytes) -> None:
        """Body bytes: into the route's sink if it attached one, else to uvicorn's queue.

        Ignored once the connection is refused or the request answered.
        """
        self._unparsed = 0
        if self._refused or self.cycle is None or self.cycle.response_complete:
            return
        sink = self._sink
        if sink is None or self.cycle is not self._body_of:
            super().on_body(body)
        elif not sink.write(body):
            self.cycle.message_event.set()  # the route raises the sink's error
        elif sink.received < len(sink.buffer) and len(self.connections) > 1:
            self._pace(sink)

    def _pace(self, sink: BodySink) -> None:
        """Read the rest of a sunk body no faster than its route would have pulled it.

        Reading pauses until the loop's next turn: between two reads of a body every other
        ready task runs (a health check under a flood of large uploads), as it did when the
        route woke for each piece. Only while other connections are open: a lone client's
        body is read at full speed (the pause and the extra turn cost about 30 us a read).
        """
        self.flow.pause_reading()

        def resume() -> None:
            if self._sink is sink and not self.transport.is_closing():
                self.flow.resume_reading()

        self.loop.call_soon(resume)

    def _attacher(self) -> Attach:
        """The current request's :data:`BODY_SINK` offer (:mod:`focal_eval.service.http.sink`)."""
        cycle = self.cycle

        def attach(sink: BodySink) -> Callable[[], None]:
            if cycle is self._body_of and self._in_body:
                pending, cycle.body = cycle.body, bytearray()
                if pending and not sink.write(pending):
                    cycle.message_event.set()
                self._sink = sink
                # a declared length: the parser expects exactly the rest of the buffer (an
                # upgrade request's body stays the parser's: it stops at the upgrade)
                self._direct = not self.parser.should_upgrade() and not any(
                    name == b"transfer-encoding" for name, _ in cycle.scope["headers"]
                )

            def detach() -> None:
                if self._sink is sink:
                    self._sink = None
                    self._direct = False

            return detach

        return attach

    def on_message_complete(self) -> None:
        """End of the request (ignored once the connection is refused)."""
        self._in_body = False
        self._received = self._unparsed = 0
        if not self._refused:
            super().on_message_complete()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout_s, self._header_timed_out
        )

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._in_headers and not self._refused and not self._responding():
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
        if self._responding():  # a pipelined or trailing head: no second answer on this socket
            self._refused = True
            self.transport.abort()
            return
        self._refuse(431, f"headers: {what}")

    # --- writing -----------------------------------------------------------------------------
    def _closing_early(self, cycle: RequestResponseCycle) -> Callable[[Any], Awaitable[None]]:
        """``cycle.send``, adding ``connection: close`` to a response begun before the body ended.

        The client is told not to reuse the connection (it would send its next request into
        one that is ending); the connection then ends by lingering
        (:meth:`on_response_complete`), not by uvicorn's immediate close.
        """
        send: Callable[[Any], Awaitable[None]] = cycle.send

        async def send_closing(message: Any) -> None:
            if message["type"] != "http.response.start" or not self._receiving(cycle):
                await send(message)
                return
            headers = [*message.get("headers", ()), (b"connection", b"close")]
            await send({**message, "headers": headers})
            self._answered_early = True
            cycle.keep_alive = True  # uvicorn would close at the end of the response

        return send_closing

    def _receiving(self, cycle: RequestResponseCycle) -> bool:
        """Whether ``cycle``'s request body is still arriving."""
        return self._in_body and self._body_of is cycle

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
        self._read_no_more()
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
