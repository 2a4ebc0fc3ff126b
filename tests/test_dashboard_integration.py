"""The dashboard against the real stack: it sees the backend go and come back."""
from __future__ import annotations

import time

import pytest
import requests

from llmops.polling import poll_until

pytestmark = pytest.mark.integration


def status(stack) -> dict:
    response = requests.get(f"{stack.settings.dashboard_url}/api/status", timeout=5)
    assert response.status_code == 200
    return response.json()


def wait_status(stack, predicate, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = status(stack)
        if predicate(last):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last status: {last}")


def test_real_stack_is_healthy(ensure_stack_ready):
    stack = ensure_stack_ready
    doc = wait_status(stack, lambda d: d["components"]["proxy"]["status"] == "healthy"
                      and d["components"]["ollama"]["status"] == "healthy", 30, "proxy and ollama healthy")
    assert "smollm2:135m" in doc["components"]["proxy"]["models"]
    assert set(doc) >= {"overall", "reason", "checked_at", "components"}


def test_real_alertmanager_is_judged_and_is_prometheus_s_alertmanager(ensure_stack_ready):
    stack = ensure_stack_ready
    doc = wait_status(stack, lambda d: d["components"]["alertmanager"]["status"] == "healthy", 30, "alertmanager healthy")
    assert doc["components"]["alertmanager"]["version"] == "0.25.0"
    # Prometheus discovers it from the rendered config (its notifier applies discovery every few seconds).
    def active():
        answer = requests.get(f"{stack.settings.prometheus_url}/api/v1/alertmanagers", timeout=5).json()
        return [a["url"] for a in answer["data"]["activeAlertmanagers"]]
    assert poll_until(active, 30) == [f"http://127.0.0.1:{stack.settings.alertmanager_port}/api/v2/alerts"]


def test_an_alert_posted_to_the_real_alertmanager_reaches_the_dashboard_s_history(ensure_stack_ready):
    """Alertmanager -> the dashboard's webhook with the token from its 0600 file -> data/alerts.db -> the API."""
    stack = ensure_stack_ready
    name = f"DeliveryCheck{int(time.time() * 1000)}"
    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    posted = requests.post(f"{stack.settings.alertmanager_url}/api/v2/alerts", timeout=5, json=[
        {"labels": {"alertname": name, "severity": "info"}, "annotations": {"summary": "a test alert"},
         "startsAt": starts}])
    assert posted.status_code == 200, posted.text

    def arrived():
        answer = requests.get(f"{stack.settings.dashboard_url}/api/alerts/history", params={"name": name}, timeout=5)
        return answer.json()["alerts"]
    (row,) = poll_until(arrived, 30) or [None]
    assert row and row["state"] == "firing" and row["summary"] == "a test alert"
    forged = requests.post(f"{stack.settings.dashboard_url}/api/alerts/webhook", timeout=5, json={})
    assert forged.status_code == 401  # anything but the stack's Alertmanager is refused


def test_alertmanager_stopped_degrades_the_stack_and_stops_nothing_else(ensure_stack_ready):
    stack = ensure_stack_ready
    interval = float(stack.settings.probe_interval)
    wait_status(stack, lambda d: d["components"]["alertmanager"]["status"] == "healthy", 30, "alertmanager healthy")
    stack.stop("alertmanager")
    try:
        doc = wait_status(stack, lambda d: d["components"]["alertmanager"]["status"] != "healthy", 3 * interval + 5,
                          "the dashboard to see Alertmanager down")
        assert doc["overall"] == "degraded" and "alerts cannot be delivered" in doc["reason"]
        assert doc["components"]["prometheus"]["status"] == "healthy"
        assert requests.get(f"{stack.settings.prometheus_url}/-/ready", timeout=5).status_code == 200
    finally:
        stack.start("alertmanager")
    wait_status(stack, lambda d: d["components"]["alertmanager"]["status"] == "healthy", 3 * interval + 10,
                "the dashboard to see Alertmanager back")


def test_backend_stopped_shows_within_two_probe_intervals_then_recovers(ensure_stack_ready):
    stack = ensure_stack_ready
    interval = float(stack.settings.probe_interval)
    wait_status(stack, lambda d: d["components"]["ollama"]["status"] == "healthy", 30, "ollama healthy")
    stack.stop("ollama")
    stopped = time.monotonic()
    # Two failed probes turn it red (hysteresis); allow one interval of slack for the probe in flight.
    doc = wait_status(stack, lambda d: d["components"]["ollama"]["status"] != "healthy", 3 * interval + 5,
                      "the dashboard to see the backend down")
    elapsed = time.monotonic() - stopped
    assert doc["overall"] in ("degraded", "down")
    assert "backend" in doc["reason"] or "ollama" in doc["reason"]
    # The proxy still lists its configured model while the backend is down: the disagreement is the reason.
    assert doc["components"]["proxy"]["status"] == "healthy"
    print(f"backend down seen after {elapsed:.1f} s (probe interval {interval} s)")
    stack.start("ollama")
    wait_status(stack, lambda d: d["components"]["ollama"]["status"] == "healthy", 3 * interval + 10,
                "the dashboard to see the backend back")


def test_no_page_or_api_response_contains_the_key(ensure_stack_ready):
    stack = ensure_stack_ready
    base = stack.settings.dashboard_url
    for path in ("/", "/api/status", "/api/models", "/api/metrics/summary", "/api/charts?window=15m",
                 "/api/alerts", "/healthz", "/metrics", "/static/app.js"):
        response = requests.get(base + path, timeout=30)
        assert response.status_code < 500, path
        assert stack.key not in response.text, f"the key leaked in {path}"
