"""Arrival schedules: rates, Poisson gaps, ramps, bursts, worker starts."""
import itertools
import statistics

import pytest

from llmops.traffic.arrivals import Burst, RateProfile, burst_schedule, merge, rate_schedule, worker_starts


def take(schedule, n):
    return list(itertools.islice(schedule, n))


def test_constant_arrivals_are_evenly_spaced_at_the_rate():
    times = take(rate_schedule(RateProfile(20.0)), 101)
    assert times[0] == 0.0
    assert times[-1] == pytest.approx(5.0)
    assert all(b - a == pytest.approx(0.05) for a, b in zip(times, times[1:], strict=False))


@pytest.mark.parametrize("seed", range(50))
def test_poisson_rate_within_5_percent_over_1000_arrivals(seed):
    rate = 50.0
    times = take(rate_schedule(RateProfile(rate), "poisson", seed=seed), 1000)
    measured = (len(times) - 1) / (times[-1] - times[0])
    assert abs(measured - rate) / rate < 0.05


def test_poisson_gaps_look_exponential():
    times = take(rate_schedule(RateProfile(10.0), "poisson", seed=7), 5000)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # An exponential distribution has its standard deviation equal to its mean; even spacing has 0.
    assert statistics.stdev(gaps) == pytest.approx(statistics.mean(gaps), rel=0.08)
    assert statistics.mean(gaps) == pytest.approx(0.1, rel=0.01)
    # Memoryless: about e^-1 of the gaps are longer than the mean.
    assert sum(g > 0.1 for g in gaps) / len(gaps) == pytest.approx(0.368, abs=0.03)


def test_poisson_schedule_is_reproducible_with_a_seed():
    a = take(rate_schedule(RateProfile(5.0), "poisson", seed=9), 50)
    b = take(rate_schedule(RateProfile(5.0), "poisson", seed=9), 50)
    c = take(rate_schedule(RateProfile(5.0), "poisson", seed=10), 50)
    assert a == b
    assert a != c


def test_ramp_rises_linearly_then_holds_the_rate():
    profile = RateProfile(10.0, ramp=4.0)
    times = take(rate_schedule(profile), 200)
    in_ramp = [t for t in times if t < 4.0]
    # The integral of a 0->10/s ramp over 4 s is 20 arrivals.
    assert len(in_ramp) == 20
    assert sum(1 for t in times if 4.0 <= t < 6.0) == 20
    assert profile.rate_at(1.0) == pytest.approx(2.5)
    for n in (0.5, 3, 19.9, 20, 55):
        assert profile.cumulative(profile.inverse(n)) == pytest.approx(n)


def test_poisson_ramp_keeps_the_profile():
    times = take(rate_schedule(RateProfile(100.0, ramp=10.0), "poisson", seed=3), 3000)
    assert abs(sum(1 for t in times if t < 10.0) - 500) < 500 * 0.1


def test_burst_sends_size_at_once_every_period():
    times = take(burst_schedule(Burst(3, 2.0)), 7)
    assert times == [0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 4.0]


def test_burst_parses_size_at_seconds_and_rejects_garbage():
    assert Burst.parse("8@10") == Burst(8, 10.0)
    for bad in ("8", "x@1", "0@1", "2@0"):
        with pytest.raises(ValueError):
            Burst.parse(bad)


def test_merge_keeps_time_order():
    merged = take(merge(rate_schedule(RateProfile(1.0)), burst_schedule(Burst(2, 2.5))), 8)
    assert merged == sorted(merged)
    assert merged.count(0.0) == 3


def test_worker_starts_ramp_from_one_to_all():
    assert worker_starts(4, 0) == [0.0] * 4
    assert worker_starts(5, 8.0) == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert worker_starts(1, 8.0) == [0.0]


def test_bad_profiles_are_rejected():
    with pytest.raises(ValueError):
        RateProfile(0)
    with pytest.raises(ValueError):
        RateProfile(1, ramp=-1)
    with pytest.raises(ValueError):
        next(rate_schedule(RateProfile(1), "gamma"))
