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
import functools
import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import orjson
import pytest
import uvicorn
import uvloop
from starlette.requests import Request
from uvicorn.server import ServerState

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


async def sink_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Receive the body into a sink; answer its sha256, the bytes charged and those landed."""
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
    charged: list[int] = []
    body = memoryview(bytearray(int(request.headers["content-length"])))
    await receive_into(request, body, charged.append)
    answer = orjson.dumps(
        {"sha256": hashlib.sha256(body).hexdigest(), "charged": sum(charged), "landed": landed}
    )
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@contextmanager
def listening(new_loop: Callable[[], asyncio.AbstractEventLoop]) -> Iterator[tuple[int, Any]]:
    """A bounded connection class serving :func:`sink_app` on a loop of its own, in a thread.

    Yields the port and the connection class (whose ``_read_buffer`` the server shares).
    """
    closed: list[str] = []
    reading = bounded_protocol(LIMITS, closed.append)  # a builtin: not bound as a method
    config = uvicorn.Config(
        sink_app, http=cast("type[asyncio.Protocol]", reading), ws="none", lifespan="off"
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
        yield ports[0], reading.connection_class
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(SOCKET_TIMEOUT_S)


def request(body: bytes) -> bytes:
    return upload_head("/", len(body), "application/octet-stream") + body


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
    with listening(new_loop) as (port, connection):
        with socket.create_connection(("127.0.0.1", port), SOCKET_TIMEOUT_S) as sock:
            sock.sendall(request(large))
            first = answers(sock, [large])[0]
            sock.sendall(request(small))  # the same connection: a fresh parser reads it
            answers(sock, [small])
        head = bytes(connection._read_buffer[:4])
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
    with (
        listening(new_loop) as (port, _),
        socket.create_connection(("127.0.0.1", port), SOCKET_TIMEOUT_S) as sock,
    ):
        sock.sendall(b"".join(request(body) for body in bodies))
        answered = answers(sock, bodies)
    assert sum(answered[0]["landed"]) > 0
