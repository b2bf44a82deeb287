"""A declared-length request body received into its buffer, by the connection when it can.

Through ASGI a body arrives piece by piece: uvicorn appends each piece the parser yields to the
request's ``bytearray``, copies it again for ``receive()``, and wakes the route through the
event loop, which copies it a third time into the buffer; a 4 MB body takes dozens of such
trips. The bounded connection (:mod:`focal_eval.service.http.connections`) offers a shortcut in
the request's scope, ``scope["extensions"][BODY_SINK]["attach"]``: the route attaches a
:class:`BodySink` over its buffer, the connection writes what the parser already holds into
it, then reads the rest of the body from the socket straight into the buffer's
:meth:`~BodySink.room` (charging it first, as the route would), and the route wakes once,
when the body is complete, refused, or the client is gone. Elsewhere (another server, the
test client) the body comes through ``receive()`` into the same buffer.

Either way memory follows what the client has sent, and a body that is refused stops being
kept at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from focal_eval.service.core.errors import RequestError, bad_request

if TYPE_CHECKING:  # focal evaluate imports the body helpers without the web stack
    from starlette.requests import Request

__all__ = [
    "BODY_SINK",
    "Attach",
    "BodySink",
    "longer_than_declared",
    "receive_into",
    "short_of_declared",
    "watch_sinks",
]

BODY_SINK = "focal.body_sink"  # the scope extension: {"attach": Attach}, from the connection

Charge = Callable[[int], None]


class BodySink:
    """The buffer a body is written into, ``received`` bytes so far; ``error`` once refused.

    ``arrived`` counts what was offered until then, the refused piece too (what telemetry
    reports as the body's size).

    Example:
        >>> sink = BodySink(memoryview(bytearray(5)), charge=lambda nbytes: None)
        >>> sink.write(b"foc"), sink.write(b"al"), bytes(sink.buffer)
        (True, True, b'focal')
        >>> sink.write(b"!"), sink.error.message
        (False, 'body: longer than its Content-Length (5)')
    """

    def __init__(self, buffer: memoryview, charge: Charge) -> None:
        self.buffer = buffer
        self.received = 0
        self.arrived = 0
        self.error: RequestError | None = None
        self._charge = charge
        self._charged = 0  # bytes of the buffer charged: received, and room given since

    def write(self, data: bytes | bytearray) -> bool:
        """Charge and keep ``data``; False (with ``error`` set) once the body is refused."""
        if self.error is not None:
            return False
        self.arrived += len(data)
        end = self.received + len(data)
        if end > len(self.buffer):
            self.error = longer_than_declared(len(self.buffer))
            return False
        if not self._charge_to(end):
            return False
        self.buffer[self.received : end] = data
        self.received = end
        return True

    def room(self, most: int) -> memoryview | None:
        """The buffer's next ``most`` bytes at most, charged, for a socket to be read into.

        None once the body is refused (the charge may refuse it: ``error`` is then set). What
        the read puts there is kept by :meth:`landed`; a shorter read leaves the rest of the
        room charged for the next one, so at most ``most`` bytes are charged ahead.
        """
        if self.error is not None:
            return None
        end = min(len(self.buffer), self.received + most)
        if not self._charge_to(end):
            return None
        return self.buffer[self.received : end]

    def landed(self, nbytes: int) -> None:
        """Keep the ``nbytes`` a socket read put at the start of the last :meth:`room`."""
        self.received += nbytes
        self.arrived += nbytes

    def _charge_to(self, end: int) -> bool:
        """Charge the buffer up to ``end`` (what is not yet); False when the charge refuses."""
        if end > self._charged:
            try:
                self._charge(end - self._charged)
            except RequestError as error:
                self.error = error
                return False
            self._charged = end
        return True


Detach = Callable[[], None]
Attach = Callable[[BodySink], Detach]  # the connection's offer; detach before the buffer goes


def watch_sinks(scope: MutableMapping[str, Any]) -> list[BodySink]:
    """The sinks the request's route will attach, as it attaches them (none without the offer).

    Their bytes never pass through ``receive()``: whoever counts a body by its messages
    (telemetry) counts ``arrived`` of these instead, once one is attached (a route attaches
    before it receives, and everything it then receives goes into the sink too).
    """
    sinks: list[BodySink] = []
    extensions = scope.get("extensions") or {}
    offer = extensions.get(BODY_SINK)
    if offer is not None:
        attach: Attach = offer["attach"]

        def watched(sink: BodySink) -> Detach:
            sinks.append(sink)
            return attach(sink)

        scope["extensions"] = {**extensions, BODY_SINK: {**offer, "attach": watched}}
    return sinks


async def receive_into(request: Request, body: memoryview, charge: Charge) -> memoryview:
    """Fill ``body`` (of the declared length) with the request's body; refuse one that differs.

    Raises:
        RequestError: 400 for a body longer or shorter than its declared length, or whatever
            ``charge`` raises.
        starlette.requests.ClientDisconnect: the client went away before the end of the body.
    """
    offer = request.scope.get("extensions", {}).get(BODY_SINK, {})
    attach: Attach | None = offer.get("attach")
    sink = BodySink(body, charge)
    if attach is None:
        await _pull(request, sink)
    else:
        detach = attach(sink)
        try:
            await _wait(request, sink)
        finally:
            detach()  # nothing may be written into the buffer once it is given back
    if sink.received != len(body):
        raise short_of_declared(sink.received, len(body))
    return body


def longer_than_declared(declared: int) -> RequestError:
    """400 for a body that goes on past its Content-Length."""
    return bad_request(f"body: longer than its Content-Length ({declared})")


def short_of_declared(received: int, declared: int) -> RequestError:
    """400 for a body that ends before its Content-Length."""
    return bad_request(f"body: {received} bytes, short of its Content-Length ({declared})")


async def _pull(request: Request, sink: BodySink) -> None:
    """Receive the body piece by piece through ASGI into ``sink``."""
    async with contextlib.aclosing(request.stream()) as stream:
        async for chunk in stream:
            if chunk:
                sink.write(chunk)
            if sink.error is not None:
                raise sink.error


async def _wait(request: Request, sink: BodySink) -> None:
    """Wait for the connection to fill ``sink``: until the body ends, is refused, or is cut.

    ``receive()`` returns when the body ends or when the connection wakes the route for a
    refusal; what it still carries (nothing, once attached) goes to the sink too.
    """
    from starlette.requests import ClientDisconnect  # the web stack, only when serving

    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message.get("body"):
            sink.write(message["body"])
        if sink.error is not None:
            raise sink.error
        if not message.get("more_body", False):
            return
