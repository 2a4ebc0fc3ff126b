"""The overall verdict for each combination of component states, and hysteresis against flapping."""
from __future__ import annotations

import requests

from llmops import health as probes
from llmops.dashboard.monitor import Check, Hysteresis, Monitor
from llmops.dashboard.promapi import PromAPI
from llmops.dashboard.verdict import decide
from llmops.health import ProbeResult
from tests.support.fakes.dashboard import (
    BACKEND,
    BACKEND2,
    KEY,
    PROM,
    PROXY,
    FakeHTTP,
    FakeResponse,
    backend_routes,
    healthy_stack,
    without,
)

OK = ProbeResult("healthy", 1.0, "fine")


def run_stack(routes: dict, backends=(BACKEND,), canary=True, rounds: int = 2) -> dict:
    """Build the real checks over a fake HTTP session, run every check `rounds` times, return the status."""
    http = FakeHTTP(routes)
    prom = PromAPI(PROM, http)
    checks = [Check("proxy", lambda: probes.probe_proxy(http, PROXY, KEY), 5, "proxy")]
    checks += [Check(f"backend:{b}", lambda b=b: probes.probe_backend(http, b), 5, "ollama") for b in backends]
    checks.append(Check("prometheus", lambda: probes.probe_prometheus(http, PROM), 5, "prometheus"))
    checks.append(Check("traffic", lambda: probes.probe_traffic(prom), 5, "traffic", fail_after=None))
    if canary:
        checks.append(Check("canary", lambda: probes.probe_canary(http, PROXY, KEY, "smollm2:135m"), 60, "canary"))
    monitor = Monitor(checks, clock=lambda: 1_700_000_000.0)
    for _ in range(rounds):
        monitor.run_once()
    return monitor.status()


def test_everything_up_is_healthy():
    status = run_stack(healthy_stack())
    assert status["overall"] == "healthy", status["reason"]
    assert "proxy lists 1 model" in status["reason"]


def test_proxy_lists_models_while_backend_down_is_degraded_with_that_reason():
    status = run_stack(without(healthy_stack(), BACKEND), canary=False)
    assert status["components"]["proxy"]["status"] == "healthy"  # the user's rule, kept exactly
    assert status["components"]["ollama"]["status"] == "offline"
    assert status["overall"] == "degraded"
    assert status["reason"].startswith("proxy lists 1 model but the backend is unreachable: requests will fail")


def test_proxy_500_without_key_gives_auth_reason_and_down():
    routes = healthy_stack()
    routes[f"GET {PROXY}/v1/models"] = FakeResponse(500, {"error": "prisma"})
    status = run_stack(routes)
    assert status["overall"] == "down"
    assert "auth" in status["reason"] and "LITELLM_MASTER_KEY" in status["reason"]


def test_proxy_timeout_is_down_with_timeout_reason():
    routes = healthy_stack()
    routes[f"GET {PROXY}/v1/models"] = requests.ReadTimeout("slow")
    status = run_stack(routes)
    assert status["overall"] == "down"
    assert "did not answer /v1/models in time" in status["reason"]
    assert status["components"]["proxy"]["error"] == "timeout"


def test_backend_timeout_is_reported_as_backend_down():
    routes = healthy_stack()
    routes[f"GET {BACKEND}/api/version"] = requests.ConnectTimeout("slow")
    status = run_stack(routes, canary=False)
    assert status["overall"] == "degraded"
    assert "backend is not answering" in status["reason"] and "timeout" in status["reason"]
    assert status["components"]["ollama"]["error"] == "timeout"


def test_proxy_and_backend_both_down_is_down_naming_both():
    status = run_stack(without(without(healthy_stack(), PROXY), BACKEND))
    assert status["overall"] == "down"
    assert "proxy is unreachable" in status["reason"] and "backend is unreachable too" in status["reason"]


def test_one_of_two_backends_down_is_degraded_naming_it():
    routes = {**healthy_stack(), **backend_routes(BACKEND2)}
    status = run_stack(without(routes, BACKEND), backends=(BACKEND, BACKEND2))
    assert status["overall"] == "degraded"
    assert "1 of 2 backends down (127.0.0.1:18434)" in status["reason"]
    rows = {b["backend"]: b["status"] for b in status["components"]["ollama"]["backends"]}
    assert rows == {"127.0.0.1:18434": "offline", "127.0.0.1:18435": "healthy"}


def test_prometheus_down_means_metrics_unavailable_but_health_still_right():
    status = run_stack(without(healthy_stack(), PROM))
    assert status["overall"] == "degraded"
    assert status["reason"] == "Prometheus is down: metrics unavailable; proxy and backend are healthy"
    assert status["components"]["proxy"]["status"] == "healthy"
    assert status["components"]["ollama"]["status"] == "healthy"
    assert status["components"]["traffic"]["detail"].startswith("metrics unavailable")


def test_canary_failure_alone_is_degraded():
    routes = healthy_stack()
    routes[f"POST {PROXY}/v1/chat/completions"] = FakeResponse(500, {"error": "boom"})
    status = run_stack(routes)
    assert status["overall"] == "degraded" and status["reason"].startswith("canary request through the proxy failed")


def test_canary_off_is_not_a_problem():
    status = run_stack(healthy_stack(), canary=False)
    assert status["overall"] == "healthy"
    assert status["components"]["canary"]["enabled"] is False


def test_failing_real_traffic_is_degraded():
    status = run_stack(healthy_stack(traffic=(40, 10, 0)))
    assert status["overall"] == "degraded" and "real requests are failing" in status["reason"]


def test_several_issues_keep_the_worst_first_and_count_the_rest():
    overall, reason = decide({
        "proxy": {"status": "offline", "error": "offline", "models": []},
        "ollama": {"status": "healthy", "backends": [{"status": "healthy"}]},
        "prometheus": {"status": "offline", "error": "offline"},
        "traffic": {"status": "offline"},
        "canary": {"status": "unhealthy", "enabled": True},
    })
    assert overall == "down"
    assert reason.startswith("proxy is unreachable") and "(+1 more: Prometheus is down" in reason


def test_before_first_probe_says_starting():
    monitor = Monitor([Check("proxy", lambda: OK, 5, "proxy")])
    assert monitor.status()["overall"] == "degraded"
    assert monitor.status()["reason"].startswith("starting")


def test_one_failure_does_not_turn_red_two_do_and_one_success_turns_green():
    state = Hysteresis(fail_after=2)
    fail = ProbeResult("offline", 2.0, "refused", "offline")
    assert state.observe(OK, 0).status == "healthy"
    held = state.observe(fail, 1)
    assert held.status == "healthy" and "last probe failed: refused" in held.detail
    assert state.observe(fail, 2).status == "offline"
    assert state.since == 2
    assert state.observe(OK, 3).status == "healthy"
    assert state.since == 3 and state.failures_total == 2


def test_flapping_probe_stays_green():
    state = Hysteresis(fail_after=2)
    fail = ProbeResult("offline", None, "refused", "offline")
    seen = [state.observe(r, t).status for t, r in enumerate([OK, fail, OK, fail, OK, fail, OK])]
    assert seen == ["healthy"] * 7
    assert state.since == 0


def test_first_result_counts_at_once_when_nothing_was_green():
    state = Hysteresis(fail_after=2)
    assert state.observe(ProbeResult("offline", None, "refused", "offline"), 0).status == "offline"


def test_monitor_thread_publishes_results_without_readers_waiting():
    calls = []

    def slow_ok():
        calls.append(1)
        return OK

    monitor = Monitor([Check("proxy", slow_ok, 0.05, "proxy")])
    monitor.start()
    try:
        assert monitor.wait_for(lambda s: s["components"]["proxy"]["status"] == "healthy", timeout=5)
        assert monitor.wait_for(lambda s: len(calls) >= 3, timeout=5)
    finally:
        monitor.stop()
    assert not monitor.running


def test_a_probe_that_raises_becomes_a_status():
    def broken():
        raise RuntimeError("bug")

    monitor = Monitor([Check("proxy", broken, 5, "proxy")])
    monitor.run_once()
    proxy = monitor.status()["components"]["proxy"]
    assert proxy["status"] == "unhealthy" and "RuntimeError" in proxy["detail"]


def test_a_failing_backend_is_named_as_failing_with_its_detail():
    from llmops.dashboard.verdict import decide

    components = {
        "proxy": {"status": "healthy", "models": ["smollm2:135m"], "error": ""},
        "ollama": {"status": "unhealthy", "error": "http", "detail": "/api/version answered HTTP 500",
                   "backends": [{"backend": "127.0.0.1:11434", "status": "unhealthy", "error": "http",
                                 "detail": "/api/version answered HTTP 500"}]},
        "prometheus": {"status": "healthy", "error": ""}, "traffic": {"status": "healthy", "error": ""},
        "canary": {"status": "healthy", "error": "", "enabled": True},
    }
    overall, reason = decide(components)
    assert overall == "degraded"
    assert reason == ("proxy lists 1 model but the backend is failing (/api/version answered HTTP 500): "
                      "requests will fail")


def test_healthy_reason_names_client_errors_by_class_and_count():
    # The issue's fresh stack: the card must not say "100% of 1 real requests succeeded".
    status = run_stack(healthy_stack(traffic={"200": 15, "400": 3}))
    assert status["overall"] == "healthy"
    assert status["reason"].endswith("; 3 of 18 requests failed in the last 5m: 3 client errors (HTTP 400)")
    assert status["components"]["traffic"]["outcomes"]["client_error"] == 3


def test_server_errors_make_the_verdict_degraded_naming_them():
    status = run_stack(healthy_stack(traffic={"200": 2, "500": 8}))
    assert status["overall"] == "degraded"
    assert "real requests are failing: 8 of 10 requests failed in the last 5m: 8 server errors (HTTP 500)" in status["reason"]
