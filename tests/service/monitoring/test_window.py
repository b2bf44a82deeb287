from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from focal_eval.service.monitoring.window import Window, max_buckets


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stats(value: int) -> dict[str, npt.NDArray[np.generic]]:
    return {"confusion_matrix": np.array([[value]]), "focal_loss_sum": np.array([value / 2])}


def _window(max_samples: int, max_seconds: float, buckets: int) -> tuple[Window, Clock]:
    clock = Clock()
    return Window(max_samples, max_seconds, buckets, clock=clock), clock


# --- how batches fill buckets -----------------------------------------------------------------


def test_batches_join_the_open_bucket_until_it_holds_ceil_w_over_k_samples() -> None:
    window, _ = _window(max_samples=101, max_seconds=1e9, buckets=10)  # 11 samples a bucket
    window.push(stats(10), 10)
    window.push(stats(1), 1)  # 10 < 11 held: joins
    assert window.buckets == 1
    window.push(stats(1), 1)  # 11 held: a new bucket opens
    assert window.buckets == 2
    assert window.total()[1:] == (12, 3)


def test_a_bucket_closes_t_over_k_seconds_after_it_opened() -> None:
    window, clock = _window(max_samples=10**9, max_seconds=100, buckets=10)  # 10 s a bucket
    window.push(stats(1), 1)
    clock.now = 6
    window.push(stats(1), 1)  # open 6 s: joins
    clock.now = 9.5
    window.push(stats(1), 1)  # open 9.5 s (3.5 s after its newest batch): joins
    assert window.buckets == 1
    clock.now = 10
    window.push(stats(1), 1)  # open 10 s: a new bucket opens
    assert window.buckets == 2
    assert window.total()[1:] == (4, 4)


def test_summed_statistics_add_every_batch_of_every_bucket() -> None:
    window, _ = _window(max_samples=100, max_seconds=1e9, buckets=10)
    for samples in (3, 4, 5, 20, 6):
        window.push(stats(samples), samples)
    summed, samples, batches = window.total()
    assert summed is not None
    assert summed["confusion_matrix"].tolist() == [[38]]
    assert summed["focal_loss_sum"].tolist() == [19.0]
    assert (samples, batches) == (38, 5)


# --- what leaves the window ----------------------------------------------------------------


def test_oldest_bucket_leaves_once_the_newer_ones_hold_w_samples() -> None:
    window, _ = _window(max_samples=10, max_seconds=1e9, buckets=2)  # 5 samples a bucket
    window.push(stats(5), 5)
    window.push(stats(5), 5)
    assert window.total()[1:] == (10, 2)  # the newer bucket holds 5 < 10: the oldest stays
    window.push(stats(5), 5)  # the newer buckets hold 10: the oldest leaves
    assert window.total()[1:] == (10, 2)
    window.push(stats(3), 3)  # newer than the oldest: 5 + 3 < 10, it stays
    assert window.total()[1:] == (13, 3)


def test_a_batch_larger_than_w_ends_up_alone() -> None:
    window, _ = _window(max_samples=10, max_seconds=1e9, buckets=2)
    window.push(stats(5), 5)
    window.push(stats(500), 500)
    summed, samples, batches = window.total()
    assert summed is not None
    assert summed["confusion_matrix"].tolist() == [[500]]
    assert (samples, batches) == (500, 1)


def test_a_bucket_leaves_once_its_newest_batch_is_older_than_t() -> None:
    window, clock = _window(max_samples=10**9, max_seconds=60, buckets=10)  # 6 s a bucket
    window.push(stats(1), 1)
    clock.now = 5
    window.push(stats(2), 2)  # same bucket as the batch at 0
    clock.now = 30
    window.push(stats(4), 4)  # a new bucket
    clock.now = 64
    assert window.total()[1:] == (7, 3)  # the batch at 0 is 64 s old, its bucket's newest 59 s
    clock.now = 65.5
    assert window.total()[1:] == (4, 1)
    clock.now = 90
    assert window.total()[1:] == (4, 1)  # exactly T old: still inside
    clock.now = 90.5
    assert window.total() == (None, 0, 0)


def test_pushed_statistics_are_copied() -> None:
    window, _ = _window(max_samples=100, max_seconds=100, buckets=10)
    first, second = stats(3), stats(4)
    window.push(first, 3)
    window.push(second, 4)  # joins the bucket holding a copy of first
    assert first["confusion_matrix"].tolist() == [[3]]
    first["confusion_matrix"][0, 0] = 999
    second["confusion_matrix"][0, 0] = 999
    summed = window.total()[0]
    assert summed is not None
    assert summed["confusion_matrix"].tolist() == [[7]]


def test_total_returns_a_copy() -> None:
    window, _ = _window(max_samples=100, max_seconds=100, buckets=10)
    window.push(stats(3), 3)
    summed = window.total()[0]
    assert summed is not None
    summed["confusion_matrix"][0, 0] = 999
    again = window.total()[0]
    assert again is not None
    assert again["confusion_matrix"].tolist() == [[3]]


def test_max_buckets_is_2k_plus_2() -> None:
    assert [max_buckets(k) for k in (1, 2, 10, 1000)] == [4, 6, 22, 2002]


def test_one_row_batches_never_hold_more_than_max_buckets() -> None:
    window, clock = _window(max_samples=1000, max_seconds=1.0, buckets=10)
    most = 0
    for _ in range(20_000):
        clock.now += 0.001
        window.push(stats(1), 1)
        most = max(most, window.buckets)
    assert 10 <= most <= max_buckets(10)
    samples = window.total()[1]
    assert 1000 <= samples <= 1000 + 100  # at least W, at most one bucket (W / K) more


# --- any traffic: bounded, and the documented rule --------------------------------------------


@dataclass
class _Bucket:
    """The reference's bucket: which batches it holds, by index."""

    opened: float
    newest: float
    samples: int
    batches: list[int]


def _reference_batches(
    pushes: list[tuple[float, int]], max_samples: int, max_seconds: int, buckets: int, now: float
) -> list[int]:
    """The batches in the window at ``now``, from the rule in window.py's docstring.

    Batches join the newest bucket until it holds ceil(W / K) samples or has been open T / K
    seconds. A bucket is in the window if its newest batch is at most T old and the buckets
    after it hold fewer than W samples.
    """
    per_bucket = -(-max_samples // buckets)
    made: list[_Bucket] = []
    for index, (time, samples) in enumerate(pushes):
        newest = made[-1] if made else None
        if (
            newest is None
            or newest.samples >= per_bucket
            or (time - newest.opened) * buckets >= max_seconds
        ):
            made.append(_Bucket(time, time, samples, [index]))
        else:
            newest.newest = time
            newest.samples += samples
            newest.batches.append(index)
    kept: list[int] = []
    after = 0
    for bucket in reversed(made):
        if bucket.newest >= now - max_seconds and after < max_samples:
            kept.extend(bucket.batches)
        after += bucket.samples
    return sorted(kept)


@given(
    max_samples=st.integers(1, 40),
    max_seconds=st.integers(1, 12),
    buckets=st.integers(1, 6),
    steps=st.lists(st.tuples(st.integers(0, 24), st.integers(0, 15)), max_size=60),
    later=st.integers(0, 60),
)
@settings(max_examples=300, deadline=None)
def test_buckets_stay_bounded_and_totals_follow_the_documented_rule(
    max_samples: int,
    max_seconds: int,
    buckets: int,
    steps: list[tuple[int, int]],
    later: int,
) -> None:
    clock = Clock()
    window = Window(max_samples, max_seconds, buckets, clock=clock)
    pushes: list[tuple[float, int]] = []
    for index, (quarters, samples) in enumerate(steps):
        clock.now += quarters / 4  # exact binary fractions: the rule's comparisons are exact
        one_hot = np.zeros(len(steps), dtype=np.int64)
        one_hot[index] = 1
        window.push({"seen": one_hot, "half_samples": np.array([samples / 2])}, samples)
        pushes.append((clock.now, samples))
        assert window.buckets <= max_buckets(buckets)
        _check_total(window, pushes, max_samples, max_seconds, buckets, clock.now)
    clock.now += later / 4
    _check_total(window, pushes, max_samples, max_seconds, buckets, clock.now)


def _check_total(
    window: Window,
    pushes: list[tuple[float, int]],
    max_samples: int,
    max_seconds: int,
    buckets: int,
    now: float,
) -> None:
    kept = _reference_batches(pushes, max_samples, max_seconds, buckets, now)
    summed, samples, batches = window.total()
    expected_samples = sum(pushes[index][1] for index in kept)
    assert (samples, batches) == (expected_samples, len(kept))
    if not kept:
        assert summed is None
        return
    assert summed is not None
    assert np.flatnonzero(summed["seen"]).tolist() == kept
    assert summed["seen"].max() == 1
    assert summed["half_samples"].tolist() == [expected_samples / 2]
    # the promise: at least the last W samples seen within T seconds
    newest_first = 0
    for index in reversed(range(len(pushes))):
        time, count = pushes[index]
        if time < now - max_seconds or newest_first >= max_samples:
            break
        assert index in kept
        newest_first += count
