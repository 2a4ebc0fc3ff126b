"""FAKE clock for scheduler and queue logic: time moves only when the test says so."""
from __future__ import annotations


class FakeClock:
    """A monotonic clock the test advances by hand (call it to read the time)."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
