"""poll_until, the one deadline loop, and the supervisor's liveness check (psutil)."""
from __future__ import annotations

import subprocess
import sys

from llmops.polling import poll_until
from llmops.stack.supervisor import _alive
from tests.support.helpers import wait_for


class FakeClock:
    """A clock that moves only when the poller sleeps."""

    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_the_first_truthy_value_without_sleeping_more():
    answers = iter([None, 0, "ready", "never asked"])
    clock = FakeClock()
    assert poll_until(lambda: next(answers), 10, interval=0.5, clock=clock, sleep=clock.sleep) == "ready"
    assert clock.sleeps == [0.5, 0.5]


def test_gives_up_at_the_deadline_with_the_last_value():
    clock = FakeClock()
    calls = []
    assert poll_until(lambda: calls.append(clock.now) or 0, 1.0, interval=0.4, clock=clock, sleep=clock.sleep) == 0
    assert calls == [0.0, 0.4, 0.8, 1.0]  # the last call lands on the deadline, not past it


def test_a_zero_timeout_still_asks_once():
    assert poll_until(lambda: "now", 0) == "now"


def test_alive_sees_a_running_child_and_not_a_zombie_or_a_reaped_one():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert _alive(child.pid)
        child.kill()
        wait_for(lambda: not _alive(child.pid), 10, "the killed child to read as dead while still a zombie")
        assert child.poll() is not None  # reaped now
        assert not _alive(child.pid)
    finally:
        child.kill()
        child.wait()
