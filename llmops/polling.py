"""Waiting on a condition with a deadline: the one loop that start, stop and the fault tests use."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(condition: Callable[[], T], timeout: float, interval: float = 0.2,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call condition() until it returns a truthy value or `timeout` seconds pass; return its last value.

    It is called at least once, and once more at the deadline's edge, so a short timeout still gets an answer.
    """
    deadline = clock() + timeout
    while True:
        value = condition()
        if value or clock() >= deadline:
            return value
        sleep(max(0.0, min(interval, deadline - clock())))
