from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from focal_eval.service.core.errors import RequestError
from focal_eval.service.memory.budget import MemoryBudget, mib

MIB = 2**20
LIMIT = 50 * MIB


@pytest.fixture
def budget() -> MemoryBudget:
    return MemoryBudget(LIMIT)


@pytest.fixture
def fine_thread_switching() -> Iterator[None]:
    """Switch threads as often as CPython allows, so that unlocked updates would interleave."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def _refused(action: Callable[[], object]) -> RequestError:
    with pytest.raises(RequestError) as caught:
        action()
    return caught.value


@pytest.mark.parametrize(
    ("nbytes", "shown"),
    [
        pytest.param(0, "0.0 MiB", id="zero"),
        pytest.param(3 * 2**19, "1.5 MiB", id="one-and-a-half"),
        pytest.param(12 * MIB + MIB // 2, "12.5 MiB", id="twelve-and-a-half"),
        pytest.param(1, "0.0 MiB", id="one-byte"),
    ],
)
def test_mib_shows_one_decimal(nbytes: int, shown: str) -> None:
    assert mib(nbytes) == shown


def test_reservation_holds_what_it_grows_to(budget: MemoryBudget) -> None:
    reservation = budget.reservation()
    reservation.grow(10 * MIB, "body")
    reservation.grow(5 * MIB, "body")
    assert (reservation.nbytes, budget.reserved) == (15 * MIB, 15 * MIB)
    reservation.resize(4 * MIB, "logits")
    assert (reservation.nbytes, budget.reserved) == (4 * MIB, 4 * MIB)


def test_the_whole_budget_fits_in_one_reservation(budget: MemoryBudget) -> None:
    reservation = budget.reservation()
    reservation.grow(LIMIT, "body")
    assert budget.reserved == LIMIT


def test_more_than_the_whole_budget_is_413(budget: MemoryBudget) -> None:
    reservation = budget.reservation()
    error = _refused(lambda: reservation.grow(LIMIT + 1, "logits"))
    assert error.status_code == 413
    assert error.message == (
        "logits: needs about 50.0 MiB of memory, more than the server's budget for request"
        " work (50.0 MiB, FOCAL_MEMORY_LIMIT)"
    )
    assert error.headers is None
    assert (reservation.nbytes, reservation.peak, budget.reserved) == (0, 0, 0)


def test_413_counts_what_the_reservation_already_holds(budget: MemoryBudget) -> None:
    reservation = budget.reservation()
    reservation.grow(30 * MIB, "body")
    error = _refused(lambda: reservation.grow(25 * MIB, "logits"))
    assert error.status_code == 413
    assert error.message == (
        "logits: needs about 55.0 MiB of memory, more than the server's budget for request"
        " work (50.0 MiB, FOCAL_MEMORY_LIMIT)"
    )
    assert (reservation.nbytes, budget.reserved) == (30 * MIB, 30 * MIB)


def test_more_than_is_free_now_is_503_with_retry_after(budget: MemoryBudget) -> None:
    other = budget.reservation()
    other.grow(30 * MIB, "body")
    reservation = budget.reservation()
    reservation.grow(10 * MIB, "body")
    error = _refused(lambda: reservation.grow(15 * MIB, "outputs"))
    assert error.status_code == 503
    assert error.message == (
        "server: outputs needs about 25.0 MiB of memory and 40.0 MiB of the 50.0 MiB budget is"
        " in use (FOCAL_MEMORY_LIMIT); retry shortly"
    )
    assert error.headers == {"Retry-After": "1"}
    assert (reservation.nbytes, budget.reserved) == (10 * MIB, 40 * MIB)


def test_refused_work_fits_once_another_reservation_is_released(budget: MemoryBudget) -> None:
    other = budget.reservation()
    other.grow(30 * MIB, "body")
    reservation = budget.reservation()
    assert _refused(lambda: reservation.grow(25 * MIB, "body")).status_code == 503
    other.release()
    reservation.grow(25 * MIB, "body")
    assert budget.reserved == 25 * MIB


def test_shrinking_is_never_refused_even_when_the_budget_is_full(budget: MemoryBudget) -> None:
    reservation = budget.reservation()
    reservation.grow(20 * MIB, "body")
    budget.reservation().grow(30 * MIB, "body")
    reservation.resize(5 * MIB, "logits")
    assert budget.reserved == 35 * MIB


def test_release_gives_every_byte_back_once(budget: MemoryBudget) -> None:
    peaks: list[int] = []
    other = budget.reservation()
    other.grow(7 * MIB, "body")
    reservation = budget.reservation(on_release=peaks.append)
    reservation.grow(12 * MIB, "body")
    reservation.release()
    reservation.release()
    assert (reservation.nbytes, budget.reserved) == (0, 7 * MIB)
    assert peaks == [12 * MIB]


def test_peak_is_the_most_held_and_ignores_refused_sizes(budget: MemoryBudget) -> None:
    peaks: list[int] = []
    reservation = budget.reservation(on_release=peaks.append)
    reservation.grow(10 * MIB, "body")
    reservation.resize(30 * MIB, "logits")
    reservation.resize(5 * MIB, "outputs")
    budget.reservation().grow(40 * MIB, "body")
    _refused(lambda: reservation.resize(20 * MIB, "outputs"))  # 503
    _refused(lambda: reservation.resize(LIMIT + 1, "outputs"))  # 413
    assert reservation.peak == 30 * MIB
    reservation.release()
    assert peaks == [30 * MIB]


def test_resize_after_release_is_an_error(budget: MemoryBudget) -> None:
    reservation = budget.reservation()
    reservation.release()
    with pytest.raises(RuntimeError, match=r"^resize after release$"):
        reservation.grow(1, "body")
    assert budget.reserved == 0


def test_check_refuses_as_grow_would_but_reserves_nothing(budget: MemoryBudget) -> None:
    reservation = budget.reservation()
    reservation.grow(10 * MIB, "body")
    reservation.check(40 * MIB, "logits")  # exactly fills the budget: allowed
    assert (reservation.nbytes, budget.reserved) == (10 * MIB, 10 * MIB)
    too_big = _refused(lambda: reservation.check(41 * MIB, "logits"))
    assert too_big.status_code == 413
    assert too_big.message == (
        "logits: needs about 51.0 MiB of memory, more than the server's budget for request"
        " work (50.0 MiB, FOCAL_MEMORY_LIMIT)"
    )
    budget.reservation().grow(30 * MIB, "body")
    busy = _refused(lambda: reservation.check(15 * MIB, "logits"))
    assert busy.status_code == 503
    assert busy.message == (
        "server: logits needs about 15.0 MiB of memory and 40.0 MiB of the 50.0 MiB budget is"
        " in use (FOCAL_MEMORY_LIMIT); retry shortly"
    )
    assert busy.headers == {"Retry-After": "1"}
    assert (reservation.nbytes, budget.reserved) == (10 * MIB, 40 * MIB)


def test_refuse_unless_free_and_refuse_if_never_fits_reserve_nothing(
    budget: MemoryBudget,
) -> None:
    budget.refuse_if_never_fits(LIMIT, "body")
    budget.refuse_unless_free(LIMIT, "body")
    assert budget.reserved == 0
    assert _refused(lambda: budget.refuse_if_never_fits(LIMIT + 1, "body")).status_code == 413
    budget.reservation().grow(1, "body")
    assert _refused(lambda: budget.refuse_unless_free(LIMIT, "body")).status_code == 503
    assert budget.reserved == 1


# --- threads ----------------------------------------------------------------------------------


def _run_threads(count: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(index: int) -> None:
        try:
            start.wait()
            target(index)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.usefixtures("fine_thread_switching")
def test_concurrent_grows_and_releases_are_counted_exactly() -> None:
    budget = MemoryBudget(10**12)
    threads, steps = 8, 5000
    reservations = [budget.reservation() for _ in range(threads)]

    def grow(index: int) -> None:
        for _ in range(steps):
            reservations[index].grow(1, "body")

    _run_threads(threads, grow)
    assert budget.reserved == threads * steps
    _run_threads(threads, lambda index: reservations[index].release())
    assert budget.reserved == 0


@pytest.mark.usefixtures("fine_thread_switching")
def test_concurrent_reservations_never_exceed_the_limit() -> None:
    limit = 100
    budget = MemoryBudget(limit)
    seen: list[int] = []
    refused: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(budget.reserved)

    def work(index: int) -> None:
        rng = random.Random(index)
        for _ in range(1500):
            reservation = budget.reservation()
            for _ in range(3):
                try:
                    reservation.grow(rng.randint(1, 30), "body")
                except RequestError as error:
                    refused.append(error.status_code)
                seen.append(budget.reserved)
            reservation.release()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        _run_threads(8, work)
    finally:
        done.set()
        watcher.join()
    assert max(seen) <= limit
    assert set(refused) == {503}  # contention happened, and was only ever "busy"
    assert budget.reserved == 0
