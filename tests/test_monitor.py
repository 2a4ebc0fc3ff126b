"""The monitor: silence turns a component red at once; ordinary failures need two in a row."""
import threading
import time

from llmops.dashboard.monitor import Check, Monitor
from llmops.health import HEALTHY, UNHEALTHY, ProbeResult

OK = ProbeResult(HEALTHY, 1.0, "1 model(s)", "", {"models": ["m"]})


def proxy_status(monitor: Monitor) -> str:
    return monitor.status()["components"]["proxy"]["status"]


def test_one_http_failure_is_held_green_but_one_timeout_is_red():
    results = iter([OK, ProbeResult(UNHEALTHY, 5.0, "HTTP 502", "http"), OK,
                    ProbeResult(UNHEALTHY, None, "no answer within 10 s", "timeout")])
    monitor = Monitor([Check("proxy", lambda: next(results), 1.0, "proxy")])
    monitor.run_check("proxy")
    monitor.run_check("proxy")
    assert proxy_status(monitor) == HEALTHY  # one HTTP failure: not yet an outage
    monitor.run_check("proxy")
    monitor.run_check("proxy")
    assert proxy_status(monitor) == UNHEALTHY  # a timeout: red at once
    assert "no answer" in monitor.status()["components"]["proxy"]["detail"]


def test_an_overdue_probe_turns_red_while_it_waits_and_green_when_answered():
    release = threading.Event()
    calls = []

    def probe():
        calls.append(1)
        if len(calls) > 1:
            release.wait(10)
        return OK

    monitor = Monitor([Check("proxy", probe, 1.0, "proxy", overdue_after=0.3)])
    monitor.run_check("proxy")
    assert proxy_status(monitor) == HEALTHY
    waiting = threading.Thread(target=monitor.run_check, args=("proxy",))
    waiting.start()
    deadline = time.monotonic() + 5
    while not monitor.check_overdue() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy_status(monitor) == UNHEALTHY
    assert "probe still waiting" in monitor.status()["components"]["proxy"]["detail"]
    assert monitor.check_overdue() == []  # flagged once per probe
    release.set()
    waiting.join(5)
    assert proxy_status(monitor) == HEALTHY


def test_a_refused_connection_turns_red_at_once_and_one_success_turns_green():
    results = iter([OK, ProbeResult("offline", None, "unreachable (connection refused)", "offline"), OK])
    monitor = Monitor([Check("proxy", lambda: next(results), 1.0, "proxy")])
    monitor.run_check("proxy")
    monitor.run_check("proxy")
    assert proxy_status(monitor) == "offline"
    monitor.run_check("proxy")
    assert proxy_status(monitor) == HEALTHY
