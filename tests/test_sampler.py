"""The sampling loop's pacing: when rounds cost more than the interval asked for."""

from spyrec.sampler import COST_CHECK_EVERY, paced_interval


def test_the_requested_interval_is_kept_while_rounds_fit_in_it():
    costs = [30_000] * 200 + [5_000_000] * 3  # 30 µs rounds, three preempted ones
    assert paced_interval(1_000_000, costs) == 1_000_000


def test_too_short_an_interval_is_widened_to_the_usual_round_cost():
    # Rounds that meet a new stack cost more: 20 µs mostly, 40 µs for one round in five.
    costs = ([20_000] * 4 + [40_000]) * 40
    interval = paced_interval(1_000, costs)
    # The grid follows the costly rounds (95th percentile, plus 5%), so no round's cost decides
    # when the next one starts, and is no longer than that.
    assert interval == 42_000


def test_no_pacing_before_enough_rounds_were_seen():
    assert paced_interval(1_000, [50_000] * (COST_CHECK_EVERY - 1)) == 1_000
