"""Reading one ahead: the same items and errors as reading in turn, overlapped, bounded, ended."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from focal_eval.evaluate.read_ahead import read_ahead

WAIT_S = 10  # a bound on waits for the other thread; none is near it when all is well


class Source:
    """Numbered items, counting how many were made and whether the source was closed."""

    def __init__(self, count: int | None, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.made = 0
        self.closed = threading.Event()
        self.started: list[threading.Event] = [threading.Event() for _ in range(64)]

    def __iter__(self) -> Iterator[int]:
        try:
            item = 0
            while self.count is None or item < self.count:
                self.started[item].set()
                if item == self.fail_at:
                    raise ValueError(f"Expected item {item} to be readable, but it was not")
                self.made += 1
                yield item
                item += 1
        finally:
            self.closed.set()


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "focal-read-ahead"]


def test_the_items_come_in_their_order_and_the_source_is_closed() -> None:
    source = Source(40)
    assert list(read_ahead(iter(source))) == list(range(40))
    assert source.closed.is_set()
    assert reader_threads() == []


def test_nothing_to_read_gives_nothing() -> None:
    assert list(read_ahead(iter(Source(0)))) == []


def test_an_error_comes_after_the_items_before_it() -> None:
    items = read_ahead(iter(Source(10, fail_at=3)))
    assert [next(items), next(items), next(items)] == [0, 1, 2]
    with pytest.raises(ValueError, match=r"^Expected item 3 to be readable, but it was not$"):
        next(items)
    assert reader_threads() == []


def test_the_next_item_is_read_while_this_one_is_used() -> None:
    source = Source(3)
    items = read_ahead(iter(source))
    assert next(items) == 0
    # item 1 is read while the caller still holds item 0: reading in turn would wait here
    assert source.started[1].wait(WAIT_S)
    assert list(items) == [1, 2]


def test_it_reads_at_most_two_items_past_the_one_in_use() -> None:
    source = Source(None)  # endless
    items = read_ahead(iter(source))
    for used in range(5):
        assert next(items) == used
        assert source.started[used + 2].wait(WAIT_S)  # one waiting, one being handed over
        # give the reader time it must not use: one item queued, the next blocked on it
        assert not source.started[used + 3].wait(0.2)
        assert source.made <= used + 3


def test_stopping_early_closes_the_source_and_ends_the_thread() -> None:
    source = Source(None)
    items = read_ahead(iter(source))
    assert [next(items), next(items)] == [0, 1]
    items.close()  # what a caller's error or Ctrl-C does to the generator
    assert source.closed.is_set()
    assert reader_threads() == []


class FailingToClose:
    """Two items, then a close that raises (a file that cannot be closed)."""

    def __init__(self) -> None:
        self.items = iter([0, 1])

    def __iter__(self) -> FailingToClose:
        return self

    def __next__(self) -> int:
        return next(self.items)

    def close(self) -> None:
        raise OSError("Expected the file to close, but it did not")


def test_a_source_that_fails_to_close_raises_after_its_items() -> None:
    items = read_ahead(FailingToClose())
    assert [next(items), next(items)] == [0, 1]
    with pytest.raises(OSError, match=r"^Expected the file to close, but it did not$"):
        next(items)
    assert reader_threads() == []
