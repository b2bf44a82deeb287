"""Responses that keep their memory accounted until it is sent.

A response of at most ``SMALL`` bytes is sent whole and its request's reservation released at once
(what one connection may buffer is part of the connection headroom). A larger one is streamed in
chunks of about ``costs.RESPONSE_CHUNK`` bytes, and it holds the reservation until its last byte is
written or the connection is cut (by the client, or by the write timeout of
:mod:`focal_eval.service.http.connections`). Pieces still to encode (a generator, such as JSON
written a block at a time) are encoded in worker threads, each only when the client has taken the
chunk before; pieces already encoded (a sequence: a binary reply's header and array views) are
sent from the event loop, as there is nothing left to compute.
"""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from itertools import chain

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from focal_eval.service.memory import costs
from focal_eval.service.memory.budget import Reservation

SMALL = 64 * 1024

Piece = bytes | memoryview


class StreamedResponse(StreamingResponse):
    """A streaming response that releases ``reservation`` once it has ended, however it ends.

    ``encoded``: the chunks cost no computation (views and joins of encoded pieces), so they
    are taken on the event loop, not each in a worker thread.
    """

    def __init__(
        self,
        chunks: Generator[Piece],
        reservation: Reservation,
        media_type: str,
        headers: Mapping[str, str] | None = None,
        *,
        encoded: bool = False,
    ) -> None:
        super().__init__(
            _on_loop(chunks) if encoded else chunks, media_type=media_type, headers=headers
        )
        self._chunks = chunks
        self._reservation = reservation
        self._encoded = encoded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the chunks, then free them and the reservation.

        Encoded chunks are sent without starlette's disconnect listener (a task group per
        response): uvicorn drops what is sent once the client is gone, and nothing is left to
        compute. The generators are closed explicitly: after a cut connection, a
        cancellation's traceback could otherwise keep them, and the arrays they hold, alive
        for a while after the reservation says they are gone.
        """
        try:
            if self._encoded:
                await self.stream_response(send)
            else:
                await super().__call__(scope, receive, send)
        finally:
            self._chunks.close()
            if isinstance(self.body_iterator, AsyncGenerator):
                await self.body_iterator.aclose()
            self._reservation.release()


def respond(
    pieces: Sequence[Piece] | Iterable[Piece],
    reservation: Reservation,
    retained: int,
    media_type: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The response for ``pieces``: whole if small (reservation released), else streamed.

    Call it from the worker thread that encoded the reply: it encodes up to ``SMALL`` bytes
    to decide. ``retained`` is what the pieces still to come keep alive (their arrays); the
    reservation shrinks to that plus one chunk while the response streams. A ``Sequence`` of
    pieces is taken as encoded (see :class:`StreamedResponse`).
    """
    iterator = iter(pieces)
    head: list[Piece] = []
    size = 0
    for piece in iterator:
        head.append(piece)
        size += len(piece)
        if size > SMALL:
            break
    else:
        reservation.release()
        return Response(b"".join(head), media_type=media_type, headers=headers)
    reservation.resize(costs.response(retained), "response")
    return StreamedResponse(
        _chunked(chain(head, iterator)),
        reservation,
        media_type,
        headers=headers,
        encoded=isinstance(pieces, Sequence),
    )


async def _on_loop(chunks: Iterator[Piece]) -> AsyncIterator[Piece]:
    for chunk in chunks:
        yield chunk


def _chunked(pieces: Iterator[Piece]) -> Generator[Piece]:
    """Pieces gathered into chunks of about ``RESPONSE_CHUNK`` bytes, large ones copied in chunks.

    Never a view of a piece: the transport keeps what it has not sent yet, even after the
    response's last write releases the reservation (uvloop keeps the view itself), and a view
    would keep its whole array alive until a slow client took the rest.
    """
    pending: list[Piece] = []
    size = 0
    for piece in pieces:
        if len(piece) >= costs.RESPONSE_CHUNK:
            if pending:
                yield b"".join(pending)
                pending, size = [], 0
            view = memoryview(piece).cast("B")
            for start in range(0, len(view), costs.RESPONSE_CHUNK):
                yield bytes(view[start : start + costs.RESPONSE_CHUNK])
            continue
        pending.append(piece)
        size += len(piece)
        if size >= costs.RESPONSE_CHUNK:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)
