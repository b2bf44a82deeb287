from __future__ import annotations

import pytest

from bench.timing import Rounds, interleave, paired_ratio


def test_paired_ratio_is_the_median_of_per_round_ratios():
    ratio = paired_ratio([2.0, 9.0, 3.0, 4.0], [1.0, 3.0, 1.0, 4.0])  # ratios 2, 3, 3, 1
    assert ratio.median == pytest.approx(2.5)
    assert ratio.low == pytest.approx(1.75)
    assert ratio.high == pytest.approx(3.0)
    assert ratio.pairs == 4


def test_excess_is_the_median_of_per_round_differences_over_the_denominator():
    rounds = Rounds(
        {"request": [5.0, 9.0, 4.0], "client": [1.0, 3.0, 3.0], "graph": [2.0, 2.0, 0.5]}
    )  # (5 - 1) / 2 = 2, (9 - 3) / 2 = 3, (4 - 3) / 0.5 = 2
    excess = rounds.excess("request", "client", "graph")
    assert (excess.median, excess.low, excess.high, excess.pairs) == (2.0, 2.0, 2.5, 3)


@pytest.mark.parametrize(
    ("numerators", "denominators"),
    [pytest.param([1.0], [1.0, 2.0], id="unequal"), pytest.param([], [], id="empty")],
)
def test_paired_ratio_refuses_unpaired_values(numerators, denominators):
    with pytest.raises(ValueError, match="equally long"):
        paired_ratio(numerators, denominators)


def test_interleave_alternates_the_order_of_candidates_every_round():
    calls: list[str] = []
    candidates = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    rounds = interleave(candidates, 4, warmup=0, settle_s=0.0, prime_below_s=0.0, min_sample_s=0.0)
    assert calls[3:] == list("abccbaabccba")  # after one calibration call each
    assert all(len(values) == 4 for values in rounds.seconds.values())


def test_interleave_stops_at_the_budget_after_min_rounds():
    rounds = interleave(
        {"a": lambda: None}, 100, min_rounds=3, budget_s=0.0, settle_s=0.0, min_sample_s=0.0
    )
    assert len(rounds.seconds["a"]) == 3
