"""Where the event loop reads a connection's bytes, under asyncio and under uvloop (the server's).

Every read goes into the server's shared buffer, except the rest of a body whose route has
attached a sink: that is read straight into the sink's buffer, each read charged first, and
the parser is replaced once the body is complete (it never saw those bytes). uvloop honours a
protocol's buffers only when the protocol is not an ``asyncio.Protocol``, so what the loop is
given is the connection's reading side. Here a real bounded connection runs on each loop in a
thread, in front of a small ASGI app that receives every body into a sink and answers with
its digest, what was charged, and how many bytes landed by direct reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import orjson
import pytest
import uvicorn
import uvloop
from starlette.requests import ClientDisconnect, Request
from uvicorn.server import ServerState

from focal_eval.service.core.errors import RequestError
from focal_eval.service.http.connections import READ_BYTES, ConnectionLimits, bounded_protocol
from focal_eval.service.http.sink import BODY_SINK, Attach, BodySink, receive_into
from tests.service.http._raw import SOCKET_TIMEOUT_S, receive_replies, upload_head

LIMITS = ConnectionLimits(
    max_connections=4,
    max_header_bytes=16_384,
    max_headers=64,
    header_timeout_s=10.0,
    idle_timeout_s=10.0,
    write_timeout_s=10.0,
)
LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(uvloop.new_event_loop, id="uvloop"),
]


@dataclass
class Listening:
    """A server of :func:`sink_app`: its port, connection class, and what its app saw end."""

    port: int
    connection: Any  # the class, whose ``_read_buffer`` the server's connections share
    events: list[str] = field(default_factory=list)


def sink_app(events: list[str]) -> Any:
    """An ASGI app: each body into a sink, answered with its sha256, bytes charged and landed.

    A request's ``x-budget`` header refuses (503) any charge past that many bytes; a refusal
    is answered with the same fields beside the error, a disconnect noted in ``events``.
    """

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        offer: Attach = scope["extensions"][BODY_SINK]["attach"]
        landed: list[int] = []

        def counting(sink: BodySink) -> Callable[[], None]:
            keep = sink.landed

            def landing(nbytes: int) -> None:
                landed.append(nbytes)
                keep(nbytes)

            sink.landed = landing  # type: ignore[method-assign]
            return offer(sink)

        scope["extensions"] = {**scope["extensions"], BODY_SINK: {"attach": counting}}
        request = Request(scope, receive)
        budget = int(request.headers.get("x-budget", 2**62))
        charged: list[int] = []

        def charge(nbytes: int) -> None:
            if sum(charged) + nbytes > budget:
                raise RequestError(503, "server: busy")
            charged.append(nbytes)

        body = memoryview(bytearray(int(request.headers["content-length"])))
        fields: dict[str, Any] = {"charged": charged, "landed": landed}
        status = 200
        try:
            await receive_into(request, body, charge)
        except ClientDisconnect:
            events.append("disconnect")
            return
        except RequestError as error:
            status, fields["error"] = error.status_code, error.message
        else:
            fields["sha256"] = hashlib.sha256(body).hexdigest()
        answer = orjson.dumps({**fields, "charged": sum(charged)})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(answer)),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})
        events.append(f"answered {status}")

    return app


@contextmanager
def listening(new_loop: Callable[[], asyncio.AbstractEventLoop]) -> Iterator[Listening]:
    """A bounded connection class serving :func:`sink_app` on a loop of its own, in a thread."""
    closed: list[str] = []
    reading = bounded_protocol(LIMITS, closed.append)  # a builtin: not bound as a method
    events: list[str] = []
    config = uvicorn.Config(
        sink_app(events),
        http=cast("type[asyncio.Protocol]", reading),
        ws="none",
        lifespan="off",
        log_level="warning",
    )
    config.load()
    state = ServerState()
    factory = functools.partial(reading, config=config, server_state=state, app_state={})
    loop = new_loop()
    started = threading.Event()
    ports: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(loop.create_server(factory, "127.0.0.1", 0))
        ports.append(server.sockets[0].getsockname()[1])
        started.set()
        loop.run_forever()
        server.close()
        for connection in state.connections:
            connection.transport.close()
        loop.run_until_complete(asyncio.sleep(0.05))  # the transports' closing callbacks
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(SOCKET_TIMEOUT_S)
    try:
        yield Listening(ports[0], reading.connection_class, events)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(SOCKET_TIMEOUT_S)


def after_answer(sock: socket.socket) -> bytes:
    """What the server sends after its answer: end of file (or a reset) is ``b""``."""
    try:
        return sock.recv(100)
    except ConnectionResetError:  # the server closed with the client's bytes unread
        return b""


def connected(server: Listening) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), SOCKET_TIMEOUT_S)


def request(body: bytes, fields: dict[str, str] | None = None) -> bytes:
    return upload_head("/", len(body), "application/octet-stream", fields) + body


def answers(sock: socket.socket, bodies: list[bytes]) -> list[dict[str, Any]]:
    """The app's answer to each of ``bodies``, checked to be that body's digest and charge."""
    found = []
    for body, reply in zip(bodies, receive_replies(sock, len(bodies)), strict=True):
        assert reply.status == 200, reply.body[:300]
        answer = orjson.loads(reply.body)
        assert answer["sha256"] == hashlib.sha256(body).hexdigest()
        assert answer["charged"] == len(body)  # every byte charged once, none ahead at the end
        found.append(answer)
    return found


@pytest.mark.parametrize("new_loop", LOOPS)
def test_a_large_body_is_read_straight_into_its_buffer_and_the_next_request_parsed(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    large = np.random.default_rng(1).bytes(3 * 2**20 + 12_345)
    small = b"after the large body"
    with listening(new_loop) as server:
        with connected(server) as sock:
            sock.sendall(request(large))
            first = answers(sock, [large])[0]
            sock.sendall(request(small))  # the same connection: a fresh parser reads it
            answers(sock, [small])
        head = bytes(server.connection._read_buffer[:4])
    # most of the body came by direct reads, none larger than one read's room
    assert sum(first["landed"]) >= len(large) - 2 * READ_BYTES
    assert max(first["landed"]) <= READ_BYTES
    # and the loop read heads into the shared buffer (the last one: the small request's)
    assert head == b"POST"


@pytest.mark.parametrize("new_loop", LOOPS)
def test_requests_pipelined_behind_a_body_read_straight_are_answered_in_order(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """The reads of a body stop at its end: what follows in the same write is the next head."""
    rng = np.random.default_rng(2)
    bodies = [rng.bytes(2**20 + 1), b"x" * 10, rng.bytes(700_001)]
    with listening(new_loop) as server, connected(server) as sock:
        sock.sendall(b"".join(request(body) for body in bodies))
        answered = answers(sock, bodies)
    assert sum(answered[0]["landed"]) > 0


@pytest.mark.parametrize("new_loop", LOOPS)
def test_a_charge_refused_mid_body_stops_the_reads_and_closes_after_the_answer(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    body = np.random.default_rng(3).bytes(3 * 2**20)
    budget = 2**20 + 1000
    with listening(new_loop) as server, connected(server) as sock:
        sock.sendall(request(body, {"x-budget": str(budget)})[: 2 * 2**20])  # then waits
        reply = receive_replies(sock, 1)[0]
        with contextlib.suppress(OSError):  # dropped; or the connection is reset, once ended
            sock.sendall(body[2 * 2**20 :])
        assert after_answer(sock) == b""
    answer = orjson.loads(reply.body)
    assert (reply.status, answer["error"]) == (503, "server: busy")
    assert reply.headers["connection"] == "close"
    assert answer["charged"] <= budget  # nothing landed past what was charged
    assert sum(answer["landed"]) <= answer["charged"]


@pytest.mark.parametrize("new_loop", LOOPS)
def test_a_client_gone_mid_body_is_a_disconnect_and_the_server_goes_on(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    body = np.random.default_rng(4).bytes(2**21)
    with listening(new_loop) as server:
        with connected(server) as sock:
            sock.sendall(request(body)[: 2**20])
            deadline = time.monotonic() + SOCKET_TIMEOUT_S
            while server.connection._read_buffer[:4] != b"POST":  # the head was read
                assert time.monotonic() < deadline
                time.sleep(0.01)
        deadline = time.monotonic() + SOCKET_TIMEOUT_S
        while server.events != ["disconnect"]:
            assert time.monotonic() < deadline, server.events
            time.sleep(0.01)
        with connected(server) as sock:  # and the next client is served
            sock.sendall(request(body))
            answers(sock, [body])


@pytest.mark.parametrize("new_loop", LOOPS)
def test_a_body_sent_after_100_continue_is_read_straight(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    body = np.random.default_rng(5).bytes(2**20 + 7)
    head = request(body, {"expect": "100-continue"})[: -len(body)]
    with listening(new_loop) as server, connected(server) as sock:
        sock.sendall(head)
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(1)
        assert interim.startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        answered = answers(sock, [body])[0]
    assert sum(answered["landed"]) > 0


@pytest.mark.parametrize("new_loop", LOOPS)
def test_bytes_after_a_closing_request_read_straight_are_dropped(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """As the parser drops them after ``Connection: close``: no second answer, no 400."""
    body = np.random.default_rng(6).bytes(2**20)
    with listening(new_loop) as server, connected(server) as sock:
        sock.sendall(request(body, {"connection": "close"}) + b"\x00not a request\r\n\r\n")
        answered = answers(sock, [body])[0]
        assert after_answer(sock) == b""
    assert sum(answered["landed"]) > 0
