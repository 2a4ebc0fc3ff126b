"""Arrival schedules: when each request of an open-loop run is due, in seconds from the start.

A schedule is an iterator of non-decreasing times. Rates follow a profile (constant, or a
linear ramp up to the target); constant arrivals are evenly spaced, Poisson arrivals use
exponential gaps (rescaled per block of 100 so the offered rate is exact). Both come from one idea: the k-th arrival is at the time where the
cumulative rate reaches k (or a running sum of unit exponential gaps), which also makes a ramped
Poisson process exact (time rescaling) rather than approximate.
"""
from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

ARRIVALS = ("constant", "poisson")
POISSON_BLOCK = 100  # arrivals per block whose total span is fixed (see rate_schedule)


@dataclass(frozen=True)
class RateProfile:
    """Rate in requests/s: rises linearly from 0 to `rate` over `ramp` seconds, then stays."""

    rate: float
    ramp: float = 0.0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0, not {self.rate}")
        if self.ramp < 0:
            raise ValueError(f"ramp must be >= 0, not {self.ramp}")

    def rate_at(self, t: float) -> float:
        """Instantaneous rate at time t."""
        if self.ramp and t < self.ramp:
            return self.rate * t / self.ramp
        return self.rate

    def cumulative(self, t: float) -> float:
        """Expected arrivals in [0, t]: the integral of the rate."""
        if self.ramp and t < self.ramp:
            return self.rate * t * t / (2 * self.ramp)
        return self.rate * (t - self.ramp / 2)

    def inverse(self, n: float) -> float:
        """The time at which `cumulative` reaches n."""
        in_ramp = self.rate * self.ramp / 2
        if self.ramp and n < in_ramp:
            return math.sqrt(2 * self.ramp * n / self.rate)
        return (n - in_ramp) / self.rate + self.ramp


def rate_schedule(profile: RateProfile, arrivals: str = "constant", seed: int | None = None) -> Iterator[float]:
    """Endless arrival times for a rate profile; Poisson gaps are reproducible with `seed`."""
    if arrivals not in ARRIVALS:
        raise ValueError(f"arrivals must be one of {', '.join(ARRIVALS)}, not {arrivals!r}")
    if arrivals == "constant":
        k = 0
        while True:
            yield profile.inverse(k)
            k += 1
    rng = random.Random(seed)
    done = 0
    while True:
        # Exponential gaps, scaled so each block of POISSON_BLOCK arrivals spans exactly its share
        # of the profile: a Poisson process conditioned on its count per block. Within a block the
        # gaps are those of a Poisson process; over the run the offered rate is the one asked for,
        # whatever the seed, instead of drifting by ~1/sqrt(n) (3% over 1,000 arrivals).
        gaps = [rng.expovariate(1.0) for _ in range(POISSON_BLOCK)]
        scale = POISSON_BLOCK / sum(gaps)
        position = 0.0
        for gap in gaps:
            position += gap * scale
            yield profile.inverse(done + min(position, POISSON_BLOCK))
        done += POISSON_BLOCK


@dataclass(frozen=True)
class Burst:
    """`size` requests at once every `every` seconds, the first at t=0."""

    size: int
    every: float

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"burst size must be >= 1, not {self.size}")
        if not self.every > 0:
            raise ValueError(f"burst period must be > 0, not {self.every}")

    @classmethod
    def parse(cls, text: str) -> Burst:
        """Read SIZE@SECONDS, e.g. `8@10` is 8 requests at once every 10 s."""
        size, sep, every = text.partition("@")
        if not sep:
            raise ValueError(f"burst {text!r} is not SIZE@SECONDS (e.g. 8@10)")
        try:
            return cls(int(size), float(every))
        except ValueError as exc:
            raise ValueError(f"burst {text!r}: {exc}") from None


def burst_schedule(burst: Burst) -> Iterator[float]:
    """Endless arrival times for a burst pattern."""
    k = 0
    while True:
        start = k * burst.every
        for _ in range(burst.size):
            yield start
        k += 1


def merge(*schedules: Iterator[float]) -> Iterator[float]:
    """Several schedules as one, in time order."""
    return heapq.merge(*schedules)


def worker_starts(concurrency: int, ramp: float) -> list[float]:
    """Start times of closed-loop workers: concurrency grows linearly from 1 over `ramp` seconds."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, not {concurrency}")
    if concurrency == 1 or not ramp:
        return [0.0] * concurrency
    return [ramp * i / (concurrency - 1) for i in range(concurrency)]
