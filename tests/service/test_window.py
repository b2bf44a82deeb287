from __future__ import annotations

import numpy as np

from service.window import Window


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stats(value: int) -> dict[str, np.ndarray]:
    return {"confusion_matrix": np.array([[value]]), "focal_loss_sum": np.array([value / 2])}


def test_window_keeps_the_fewest_recent_batches_holding_w_samples() -> None:
    window = Window(max_samples=100, max_seconds=1e9)
    for samples in (60, 30, 50):  # 30 + 50 = 80 < 100: the 60 stays
        window.push(stats(samples), samples)
    assert window.total()[1:] == (140, 3)
    window.push(stats(70), 70)  # 50 + 70 >= 100: 60 and 30 leave
    summed, samples, batches = window.total()
    assert (samples, batches) == (120, 2)
    assert summed is not None
    assert summed["confusion_matrix"].tolist() == [[120]]
    assert summed["focal_loss_sum"].tolist() == [60.0]


def test_one_batch_larger_than_w_stays_alone() -> None:
    window = Window(max_samples=10, max_seconds=1e9)
    window.push(stats(5), 5)
    window.push(stats(500), 500)
    assert window.total()[1:] == (500, 1)


def test_window_drops_batches_older_than_t() -> None:
    clock = Clock()
    window = Window(max_samples=10**9, max_seconds=60, clock=clock)
    window.push(stats(1), 1)
    clock.now = 30
    window.push(stats(2), 2)
    clock.now = 61
    assert window.total()[1:] == (2, 1)
    clock.now = 200
    assert window.total() == (None, 0, 0)


def test_pushed_statistics_are_copied() -> None:
    window = Window(max_samples=100, max_seconds=100)
    batch = stats(3)
    window.push(batch, 3)
    batch["confusion_matrix"][0, 0] = 999
    summed = window.total()[0]
    assert summed is not None
    assert summed["confusion_matrix"].tolist() == [[3]]


def test_clear_empties_the_window() -> None:
    window = Window(max_samples=100, max_seconds=100)
    window.push(stats(3), 3)
    window.clear()
    assert window.total() == (None, 0, 0)
