"""One scoring exchange, shared by ``/score`` and the v2 infer routes.

1. Before reading: a declared body that could never fit the memory budget is 413, one that
   does not fit now is 503 (so ``Expect: 100-continue`` clients need not upload it).
2. The body is received within ``FOCAL_BODY_TIMEOUT_S`` (else 408), each chunk charged to the
   request's reservation as it arrives; no scoring slot is held while it uploads.
3. A scoring slot is taken (503 when ``FOCAL_MAX_IN_FLIGHT`` are busy) and the work (decoding,
   the graph, encoding) runs in a worker thread, resizing the reservation as sizes become
   known and refusing with 503 / 413 when they would not fit.
4. The response holds what is left of the reservation until it is sent
   (:mod:`focal_eval.service.http.responses`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import anyio
from fastapi import Request, Response

from focal_eval.service.core.errors import RequestError
from focal_eval.service.core.runtime import Runtime
from focal_eval.service.http.body import (
    Body,
    StartCheck,
    content_length,
    decode_content_encoding,
    read_body,
)
from focal_eval.service.http.buffers import BodyBuffers
from focal_eval.service.memory import costs
from focal_eval.service.memory.budget import Reservation


@dataclass
class Payload:
    """A request body and its Content-Encoding; ``data`` is replaced by its decoded form.

    Holding the body here (not in a caller's variable) lets the encoded bytes be freed as
    soon as they are decoded, and a body received into one of ``buffers`` go back to them
    when the exchange ends.
    """

    data: Body
    encoding: str | None
    buffers: BodyBuffers | None = None

    def decode(
        self, limit: int, reservation: Reservation, check_start: StartCheck | None = None
    ) -> None:
        """Undo the Content-Encoding in place, charging the decoded bytes, freeing the rest.

        ``check_start`` sees the decoded body's first bytes as soon as they are inflated
        (:func:`~focal_eval.service.http.body.decode_content_encoding`).
        """
        encoded = len(self.data)
        decoded = decode_content_encoding(
            self.data,
            self.encoding,
            limit,
            lambda nbytes: reservation.grow(costs.received(nbytes), "body (decoded)"),
            check_start,
        )
        if decoded is not self.data:
            self.close()
            self.data = decoded
            reservation.grow(-costs.received(encoded), "body")
        self.encoding = None

    def close(self) -> None:
        """Drop the body; give its buffer back when it came from ``buffers``."""
        data, self.data = self.data, b""
        if self.buffers is not None:
            self.buffers.give_back(data)


Work = Callable[[Payload, Reservation], Response]


async def exchange(request: Request, runtime: Runtime, route: str, work: Work) -> Response:
    """Receive the body, take a slot, run ``work`` in a thread; its response owns the rest.

    Raises:
        RequestError: 408 / 413 / 400 while receiving, 503 when no slot or memory is free,
            and whatever ``work`` raises.
    """
    settings = runtime.settings
    reservation = runtime.reservation(route)
    payload = Payload(b"", None)
    try:
        declared = content_length(request.headers.get("content-length"), settings.max_body_bytes)
        if declared is not None:
            reservation.check(costs.received(declared), "body")
        with anyio.move_on_after(settings.body_timeout_s) as scope:
            body = await read_body(
                request,
                settings.max_body_bytes,
                lambda nbytes: reservation.grow(costs.received(nbytes), "body"),
                declared,
                runtime.buffers,
            )
        if scope.cancelled_caught:
            raise RequestError(408, f"body: not received within {settings.body_timeout_s:g} s")
        payload = Payload(body, request.headers.get("content-encoding"), runtime.buffers)
        del body
        async with runtime.gate.admit():
            response = await runtime.gate.run(work, payload, reservation)
        payload.close()
        return response
    except RequestError as error:
        payload.close()
        reservation.release()
        raise _without_frames(error) from None
    except BaseException:
        payload.close()
        reservation.release()
        raise


def _without_frames(error: RequestError) -> RequestError:
    """``error`` without its traceback, nor its causes'.

    An expected failure is answered, never logged; its frames would only keep the request's
    body and arrays alive (a traceback and its frames form a cycle that waits for the garbage
    collector) while the budget already counts them as free.
    """
    cause: BaseException | None = error
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        cause.__traceback__ = None
        cause = cause.__cause__ or cause.__context__
    return error
