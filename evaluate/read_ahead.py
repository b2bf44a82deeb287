"""Blocks read one ahead: the next block is decoded on a thread while this one is scored.

Decoding a Parquet block (pyarrow, one thread) and scoring the one before it (onnxruntime)
both release the GIL, so on two cores they overlap: ``focal evaluate`` over 2,000,000 x 100
rows took 0.80-0.85x the time of reading and scoring in turn. Memory: the block being scored,
at most one decoded and waiting, and the one being decoded (with the record batch it comes
from); one block more than reading in turn.

The items come in their order, and an exception from the source is raised where its item
would have come, so the consumer sees what reading in turn would have shown it. Leaving early
(an error while scoring, Ctrl-C, a consumer that stops) stops the thread after the block it is
decoding, closes the source (its files) and joins the thread: nothing is left running.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
POLL_SECONDS = 0.1  # how soon a reader blocked on a full queue sees that it should stop


class _End:
    """The source ended; ``error`` is what it raised, if anything."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class _Reader(Generic[T]):
    """The thread that drains ``source`` into a queue of one item."""

    def __init__(self, source: Iterator[T]) -> None:
        self.source = source
        self.items: queue.Queue[T | _End] = queue.Queue(maxsize=1)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="focal-read-ahead", daemon=True)

    def _run(self) -> None:
        end = _End()
        try:
            for item in self.source:
                if not self._put(item):
                    break  # the consumer stopped
        except BaseException as error:  # handed to the consumer, raised there
            end = _End(error)
        try:
            close = getattr(self.source, "close", None)
            if close is not None:
                close()
        except BaseException as error:
            end = end if end.error is not None else _End(error)
        self._put(end)  # always: a consumer waiting for the end must not wait forever

    def _put(self, item: T | _End) -> bool:
        """Wait for room in the queue; False once the consumer has stopped."""
        while not self.stopped.is_set():
            try:
                self.items.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


def read_ahead(source: Iterator[T]) -> Generator[T, None, None]:
    """``source``'s items, the next one produced on a thread while the caller uses this one."""
    reader = _Reader(source)
    reader.thread.start()
    try:
        while True:
            item = reader.items.get()
            if isinstance(item, _End):
                error, item.error = item.error, None  # the reader's frame holds `item` too
                if error is not None:
                    raise error
                return
            yield item
    finally:
        reader.stop()
