"""Responses: whole when small, streamed in copied chunks when large, each path on its thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import numpy as np
from starlette.types import Message

from focal_eval.service.http.responses import SMALL, StreamedResponse, respond
from focal_eval.service.memory import costs
from focal_eval.service.memory.budget import MemoryBudget

SCOPE = {"type": "http", "asgi": {"spec_version": "2.3"}, "method": "POST", "path": "/"}


class RecordingPieces(list[bytes | memoryview]):
    """Encoded pieces (a sequence) that note the threads each is taken on."""

    threads: set[int]

    def __iter__(self) -> Iterator[bytes | memoryview]:
        self.threads = set()
        for piece in super().__iter__():
            self.threads.add(threading.get_ident())
            yield piece


def send_all(response: object) -> list[Message]:
    """Run the ASGI response on a fresh event loop; the messages it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        await asyncio.sleep(60)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(response(SCOPE, receive, send))  # type: ignore[operator]
    return sent


def body_of(sent: list[Message]) -> bytes:
    return b"".join(bytes(m.get("body", b"")) for m in sent if m["type"] == "http.response.body")


def test_a_small_reply_is_sent_whole_and_releases_its_reservation_at_once() -> None:
    budget = MemoryBudget(2**30)
    reservation = budget.reservation()
    reservation.grow(1000, "work")
    response = respond([b"a" * 100, b"b" * 100], reservation, 0, "application/json")
    assert not isinstance(response, StreamedResponse)
    assert budget.reserved == 0
    assert body_of(send_all(response)) == b"a" * 100 + b"b" * 100


def test_an_encoded_reply_streams_from_the_event_loop_as_copies_of_its_arrays() -> None:
    """Binary outputs: pieces are views of arrays; what reaches the transport is copies."""
    array = np.arange(3 * costs.RESPONSE_CHUNK // 8 + 5, dtype=np.int64)  # about 3 MiB
    pieces = RecordingPieces([b'{"header":1}', array.data.cast("B"), b"tail"])
    budget = MemoryBudget(2**30)
    reservation = budget.reservation()
    response = respond(pieces, reservation, array.nbytes, "application/octet-stream")
    assert isinstance(response, StreamedResponse)
    assert budget.reserved == costs.response(array.nbytes)  # while it streams
    sent = send_all(response)
    chunks = [m["body"] for m in sent if m["type"] == "http.response.body" and m["body"]]
    assert body_of(sent) == b'{"header":1}' + array.tobytes() + b"tail"
    assert all(isinstance(chunk, bytes) for chunk in chunks)  # never a view of the array
    assert max(len(chunk) for chunk in chunks) <= costs.RESPONSE_CHUNK
    assert pieces.threads == {threading.get_ident()}  # encoded on the loop's thread: no hops
    assert budget.reserved == 0


def test_a_reply_still_to_encode_streams_from_worker_threads() -> None:
    """``respond`` (called in a worker) encodes just past SMALL; the rest is encoded in workers."""
    threads: list[int] = []

    def encode() -> Iterator[bytes]:
        for k in range(4):
            threads.append(threading.get_ident())
            yield bytes([k]) * SMALL

    budget = MemoryBudget(2**30)
    response = respond(encode(), budget.reservation(), 0, "application/json")
    assert isinstance(response, StreamedResponse)
    assert len(threads) == 2  # what respond needed to decide
    sent = send_all(response)
    assert body_of(sent) == b"".join(bytes([k]) * SMALL for k in range(4))
    assert threading.get_ident() not in threads[2:]  # never on the event loop's thread
    assert budget.reserved == 0
