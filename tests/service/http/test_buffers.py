"""Body buffers: exact views, the smallest that fits, never reused while viewed, a byte cap."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from focal_eval.service.http.buffers import BodyBuffers
from focal_eval.service.memory.derive import resident_bytes

KIB = 1024


def filled(buffers: BodyBuffers, size: int, value: int) -> memoryview:
    """A body of ``size`` bytes, all ``value``, received into ``buffers``."""
    body = buffers.take(size)
    body[:] = bytes([value]) * size
    return body


def test_a_body_is_a_writable_view_of_exactly_its_length() -> None:
    body = BodyBuffers(capacity=64 * KIB, smallest=KIB).take(3000)
    assert (len(body), body.readonly, body.nbytes) == (3000, False, 3000)


def test_bodies_at_or_over_the_smallest_size_are_wanted() -> None:
    buffers = BodyBuffers(capacity=64 * KIB, smallest=KIB)
    assert [buffers.wanted(size) for size in (0, KIB - 1, KIB, 10 * KIB)] == [
        False,
        False,
        True,
        True,
    ]


def test_a_given_back_buffer_receives_the_next_body_that_fits() -> None:
    buffers = BodyBuffers(capacity=64 * KIB, smallest=KIB)
    body = filled(buffers, 4 * KIB, 1)
    first = id(body.obj)
    assert buffers.give_back(body)
    assert buffers.kept_bytes == 4 * KIB
    again = filled(buffers, 3 * KIB, 2)
    assert id(again.obj) == first
    assert bytes(again) == b"\x02" * 3 * KIB  # the new body only, cut to its length
    assert buffers.kept_bytes == 0


def test_the_smallest_kept_buffer_that_fits_is_taken() -> None:
    buffers = BodyBuffers(capacity=64 * KIB, smallest=KIB)
    bodies = {size: buffers.take(size * KIB) for size in (8, 2, 4)}
    ids = {size: id(body.obj) for size, body in bodies.items()}
    for body in bodies.values():
        assert buffers.give_back(body)
    taken = [buffers.take(size * KIB) for size in (3, 1, 5)]  # held: ids stay unique
    assert [id(body.obj) for body in taken] == [ids[4], ids[2], ids[8]]
    assert buffers.kept_bytes == 0
    assert id(buffers.take(2 * KIB).obj) not in ids.values()  # none kept: a new one


@pytest.mark.parametrize(
    "view",
    [
        pytest.param(lambda body: np.frombuffer(body, np.float32), id="an-array-of-the-body"),
        pytest.param(lambda body: np.frombuffer(body[8:24], np.int64), id="an-array-of-a-slice"),
        pytest.param(lambda body: body[10:20], id="a-slice"),
    ],
)
def test_a_buffer_still_viewed_is_not_kept(view: object) -> None:
    """An array of the body could be read after its exchange ends: its buffer is never reused."""
    buffers = BodyBuffers(capacity=64 * KIB, smallest=KIB)
    body = filled(buffers, 4 * KIB, 7)
    alive = view(body)  # type: ignore[operator]
    assert not buffers.give_back(body)
    assert buffers.kept_bytes == 0
    other = filled(buffers, 4 * KIB, 9)  # received into a new buffer
    assert bytes(np.asarray(alive).view(np.uint8)) == b"\x07" * np.asarray(alive).nbytes
    assert bytes(other) == b"\x09" * 4 * KIB


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"x" * 4096, id="bytes"),
        pytest.param(bytearray(4096), id="bytearray"),
        pytest.param(memoryview(bytearray(4096)), id="a-view-of-a-bytearray"),
    ],
)
def test_bodies_not_received_into_a_buffer_are_not_kept(body: object) -> None:
    buffers = BodyBuffers(capacity=64 * KIB, smallest=KIB)
    assert not buffers.give_back(body)
    assert buffers.kept_bytes == 0


def test_kept_buffers_never_add_up_to_more_than_the_capacity() -> None:
    """The oldest are dropped first; one buffer larger than the capacity is never kept."""
    capacity = 10 * KIB
    buffers = BodyBuffers(capacity=capacity, smallest=KIB)
    bodies = [buffers.take(size * KIB) for size in (4, 3, 5, 11, 2)]
    ids = [id(body.obj) for body in bodies]
    kept = [buffers.give_back(body) for body in bodies]
    assert kept == [True, True, True, False, True]
    assert buffers.kept_bytes == (3 + 5 + 2) * KIB <= capacity  # the 4 KiB went first
    taken = [buffers.take(size * KIB) for size in (2, 3, 5)]
    assert [id(body.obj) for body in taken] == [ids[4], ids[1], ids[2]]


def test_capacity_zero_keeps_nothing() -> None:
    buffers = BodyBuffers(capacity=0, smallest=KIB)
    assert not buffers.give_back(buffers.take(2 * KIB))
    assert buffers.kept_bytes == 0


def test_lent_buffers_count_against_the_capacity_until_they_come_back() -> None:
    """A borrower that stalls holds a resident buffer: none is kept in its place."""
    buffers = BodyBuffers(capacity=16 * KIB, smallest=KIB)
    assert buffers.give_back(buffers.take(16 * KIB))
    stalled = buffers.take(12 * KIB)  # lent the kept 16 KiB buffer
    assert (buffers.kept_bytes, buffers.lent_bytes) == (0, 16 * KIB)
    assert not buffers.give_back(buffers.take(16 * KIB))  # a new one: no room beside it
    assert buffers.kept_bytes == 0
    assert buffers.give_back(stalled)
    assert (buffers.kept_bytes, buffers.lent_bytes) == (16 * KIB, 0)


def test_a_lent_buffer_never_given_back_stops_counting_when_freed() -> None:
    buffers = BodyBuffers(capacity=16 * KIB, smallest=KIB)
    assert buffers.give_back(buffers.take(16 * KIB))
    lost = buffers.take(16 * KIB)
    assert buffers.lent_bytes == 16 * KIB
    lost.release()
    del lost
    gc.collect()
    assert buffers.lent_bytes == 0


def test_a_kept_buffer_is_not_lent_to_a_body_of_less_than_half_its_size() -> None:
    buffers = BodyBuffers(capacity=64 * KIB, smallest=KIB)
    body = buffers.take(16 * KIB)
    first = id(body.obj)
    assert buffers.give_back(body)
    small = buffers.take(7 * KIB)
    assert id(small.obj) != first
    assert buffers.kept_bytes == 16 * KIB


def test_a_new_buffer_is_resident_only_where_the_body_was_written() -> None:
    """8 KiB sent of a declared 8 MiB: well under 1 MiB more resident (no 2 MiB huge pages)."""
    buffers = BodyBuffers(capacity=0, smallest=KIB)
    before = resident_bytes()
    body = buffers.take(8 * 2**20)
    body[: 8 * KIB] = b"x" * 8 * KIB
    grown = resident_bytes() - before
    assert grown < 2**19, f"{grown} bytes resident for 8 KiB written"
