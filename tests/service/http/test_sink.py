"""A body received into its buffer by the connection (the sink), against a scripted connection.

The real connection (:mod:`focal_eval.service.http.connections`) is exercised by the
real-server tests in ``test_receiving.py``; here a fake one writes pieces into the attached
sink on cue, so that what the route does (how often it is woken, what it keeps, what it
raises, when it lets go of the buffer) is observable exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio
import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from focal_eval.service.core.errors import RequestError
from focal_eval.service.http.sink import BODY_SINK, BodySink, receive_into, watch_sinks

Piece = bytes


class FakeConnection:
    """Offers a sink; on each ``receive()`` writes its next script step into the sink.

    A step is a list of pieces written before ``receive()`` returns, then the message it
    returns: the body has ended after the last step (``more_body`` false), a refusal wakes
    the route early (``more_body`` true), and ``None`` as a step means the client is gone.
    """

    def __init__(self, steps: list[list[Piece] | None]) -> None:
        self.steps = steps
        self.sink: BodySink | None = None
        self.sinks: list[BodySink] = []  # every sink ever attached
        self.attached = 0
        self.detached = 0
        self.receives = 0
        self.written: list[Piece] = []

    def attach(self, sink: BodySink) -> Callable[[], None]:
        self.sink = sink
        self.sinks.append(sink)
        self.attached += 1

        def detach() -> None:
            self.detached += 1
            self.sink = None

        return detach

    def write(self, piece: Piece) -> bool:
        """What the connection does with a piece the parser yields."""
        self.written.append(piece)
        return self.sink.write(piece) if self.sink is not None else False

    async def receive(self) -> Message:
        self.receives += 1
        step = self.steps.pop(0)
        if step is None:
            return {"type": "http.disconnect"}
        for piece in step:
            if not self.write(piece):
                return {"type": "http.request", "body": b"", "more_body": True}  # woken
        return {"type": "http.request", "body": b"", "more_body": bool(self.steps)}

    def request(self) -> Request:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/",
            "headers": [],
            "extensions": {BODY_SINK: {"attach": self.attach}},
        }
        return Request(scope, self.receive)


def _charges(into: list[int]) -> Callable[[int], None]:
    return into.append


def test_a_route_is_woken_once_for_a_body_written_in_many_pieces() -> None:
    pieces = [bytes([k]) * 100 for k in range(50)]
    connection = FakeConnection([pieces])
    charged: list[int] = []
    buffer = memoryview(bytearray(5000))
    body = asyncio.run(receive_into(connection.request(), buffer, _charges(charged)))
    assert bytes(body) == b"".join(pieces)
    assert connection.receives == 1  # not once per piece, as through ASGI
    assert charged == [100] * 50  # each piece charged before it was kept
    assert (connection.attached, connection.detached) == (1, 1)


def test_a_refused_charge_stops_the_sink_and_wakes_the_route_with_its_error() -> None:
    connection = FakeConnection([[b"a" * 10] * 5, [b"late"]])
    charged: list[int] = []

    def budget(nbytes: int) -> None:
        if len(charged) == 3:
            raise RequestError(503, "server: busy")
        charged.append(nbytes)

    buffer = memoryview(bytearray(100))
    with pytest.raises(RequestError) as caught:
        asyncio.run(receive_into(connection.request(), buffer, budget))
    assert (caught.value.status_code, caught.value.message) == (503, "server: busy")
    assert connection.receives == 1  # woken by the refusal, not by the end of the body
    assert bytes(buffer[:40]) == b"a" * 30 + bytes(10)  # the refused piece was not kept
    assert connection.detached == 1
    assert connection.written == [b"a" * 10] * 4  # the connection stopped at the refusal
    sink = connection.sinks[0]
    assert (sink.received, sink.arrived) == (30, 40)  # the refused piece arrived, was not kept


def test_the_sink_is_detached_when_the_route_stops_waiting() -> None:
    """A route that times out lets go of the buffer: later pieces reach nothing."""
    waiting = asyncio.Event()
    connection = FakeConnection([[b"x" * 10]])

    async def stall() -> Message:
        connection.write(b"x" * 10)
        waiting.set()
        await asyncio.sleep(60)
        raise AssertionError("not cancelled")

    connection.receive = stall  # type: ignore[method-assign]
    buffer = memoryview(bytearray(100))

    async def route() -> None:
        with anyio.move_on_after(0.05):
            await receive_into(connection.request(), buffer, lambda nbytes: None)

    asyncio.run(route())
    assert waiting.is_set()
    assert connection.detached == 1
    assert not connection.write(b"y" * 10)  # what arrives later is not written
    assert bytes(buffer[:20]) == b"x" * 10 + bytes(10)


def test_a_client_gone_mid_body_is_a_disconnect() -> None:
    connection = FakeConnection([None])
    with pytest.raises(ClientDisconnect):
        asyncio.run(
            receive_into(connection.request(), memoryview(bytearray(10)), lambda nbytes: None)
        )
    assert connection.detached == 1


def test_a_body_that_ends_short_of_its_length_is_400() -> None:
    connection = FakeConnection([[b"abc"]])
    with pytest.raises(RequestError) as caught:
        asyncio.run(
            receive_into(connection.request(), memoryview(bytearray(10)), lambda nbytes: None)
        )
    assert caught.value.status_code == 400
    assert caught.value.message == "body: 3 bytes, short of its Content-Length (10)"


def test_without_the_offer_the_body_is_pulled_through_receive() -> None:
    """Another server (or the test client): the same buffer, filled from ASGI messages."""
    messages = [b"ab", b"cd", b"ef"]

    async def receive() -> Message:
        return {"type": "http.request", "body": messages.pop(0), "more_body": bool(messages)}

    request = Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)
    charged: list[int] = []
    body = asyncio.run(receive_into(request, memoryview(bytearray(6)), _charges(charged)))
    assert (bytes(body), charged) == (b"abcdef", [2, 2, 2])


def test_watch_sinks_sees_the_sinks_a_route_attaches() -> None:
    connection = FakeConnection([[b"abc", b"de"]])
    request = connection.request()
    sinks = watch_sinks(request.scope)
    asyncio.run(receive_into(request, memoryview(bytearray(5)), lambda nbytes: None))
    assert [sink.received for sink in sinks] == [5]
    assert connection.attached == 1  # the watched offer still attaches to the connection
    assert watch_sinks({"type": "http"}) == []  # no offer: nothing to watch


def test_room_for_a_read_is_charged_first_and_at_most_one_read_ahead() -> None:
    charged: list[int] = []
    sink = BodySink(memoryview(bytearray(10)), charged.append)
    room = sink.room(4)
    assert room is not None
    assert len(room) == 4
    assert sum(charged) == 4
    room[:3] = b"abc"
    sink.landed(3)  # a short read: one charged byte is left over
    room = sink.room(4)
    assert room is not None
    assert len(room) == 4
    assert sum(charged) == 7
    room[:] = b"defg"
    sink.landed(4)
    assert sink.write(b"hi")  # pieces the parser held are charged once too
    room = sink.room(4)
    assert room is not None
    assert len(room) == 1
    room[:] = b"j"
    sink.landed(1)
    assert bytes(sink.buffer) == b"abcdefghij"
    assert (sink.received, sink.arrived, sum(charged)) == (10, 10, 10)


def test_a_refused_charge_gives_no_room_and_keeps_nothing() -> None:
    def budget(nbytes: int) -> None:
        raise RequestError(503, "server: busy")

    sink = BodySink(memoryview(bytearray(10)), budget)
    assert sink.room(4) is None
    assert sink.error is not None
    assert sink.error.status_code == 503
    assert not sink.write(b"a")  # and the sink stays refused
    assert sink.received == 0
