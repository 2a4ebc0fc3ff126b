"""The Alert history section in a real headless Chromium: what fired, for how long, whether it resolved, the rule's
reason, and "silence for 1 h" creating an Alertmanager silence through the dashboard (the page's CSRF token).

The first tests serve the dashboard over a FAKE stack (fixed times, Alertmanager's answers chosen); the last one runs
the real Alertmanager and dashboard, started by the stack's own lifecycle on ports of their own."""
from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
import requests

from llmops.alerts.backfill import Backfiller
from llmops.dashboard.promapi import PromAPI
from llmops.polling import poll_until
from tests.support import ownstack
from tests.support.alerts import alert, notification
from tests.support.browser import ARTIFACTS, open_page, serve
from tests.support.env import ROOT, offset_port
from tests.support.fakes.dashboard import ALERTMANAGER, PROM, FakeHTTP, FakeResponse, healthy_stack, make_settings

pytestmark = pytest.mark.browser
TOKEN = "browser-test-receiver-token"
HERE = ROOT / ".run-test" / "ab"


def test_history_shows_firing_and_resolved_alerts_and_silences_one(browser):
    silences = []

    def silence(method, url, kwargs):
        silences.append(kwargs["json"])
        return FakeResponse(200, {"silenceID": "b5c7-silence"})

    routes = {**healthy_stack(), f"POST {ALERTMANAGER}/api/v2/silences": silence}
    base, server = serve(routes, settings=make_settings(ALERT_RECEIVER_TOKEN=TOKEN))
    try:
        hook = f"{base}/api/alerts/webhook"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        old = alert("ProxyDown", starts="2026-12-07T01:00:00Z")
        for doc in (notification(old), notification({**old, "status": "resolved", "endsAt": "2026-12-07T01:12:00Z"}),
                    notification(alert(backend="127.0.0.1:11434", starts="2026-12-07T03:00:00Z"))):
            assert requests.post(hook, json=doc, headers=auth, timeout=5).status_code == 200
        page, errors = open_page(browser, base)
        page.select_option('#alert-history-filters select[name="since"]', "")  # all kept: the test's times are fixed
        firing = page.locator('#alert-history tr.alert-firing')
        firing.wait_for(timeout=10_000)
        text = firing.inner_text()
        assert "BackendDown" in text and "127.0.0.1:11434" in text and "no, still firing" in text
        assert "BackendDown: why it fires" in text  # the rule's reason text
        resolved = page.locator('#alert-history tr.alert-resolved')
        assert "ProxyDown" in resolved.inner_text() and "12 min" in resolved.inner_text()
        assert resolved.locator("button.silence").count() == 0  # nothing to silence once it is over
        assert "2 alerts from 3 notifications" in page.locator("#alert-history-note").inner_text()

        firing.locator("button.silence").click()
        page.wait_for_selector("#alert-history-message:not([hidden])", timeout=10_000)
        assert "silenced until" in page.locator("#alert-history-message").inner_text()
        (made,) = silences
        assert {m["name"]: m["value"] for m in made["matchers"]} == {
            "alertname": "BackendDown", "backend": "127.0.0.1:11434", "severity": "critical"}
        assert firing.locator("button.silence").inner_text() == "silenced"
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#alert-history-section").screenshot(path=str(ARTIFACTS / "alert-history.png"))
        assert errors == []
    finally:
        server.close()


def test_a_failed_silence_says_why_and_the_button_stays(browser):
    base, server = serve(healthy_stack(), settings=make_settings(ALERT_RECEIVER_TOKEN=TOKEN))  # Alertmanager answers nothing
    try:
        doc = notification(alert(starts="2026-12-07T03:00:00Z"))
        assert requests.post(f"{base}/api/alerts/webhook", json=doc, timeout=5,
                             headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        page, errors = open_page(browser, base)
        page.select_option('#alert-history-filters select[name="since"]', "")
        button = page.locator("#alert-history tr.alert-firing button.silence")
        button.wait_for(timeout=10_000)
        button.click()
        page.wait_for_selector("#alert-history-message.unavailable:not([hidden])", timeout=10_000)
        assert "Alertmanager cannot be reached" in page.locator("#alert-history-message").inner_text()
        assert button.is_enabled()
        # The browser logs the 503 of the failed POST as a console error; nothing else may appear.
        assert [e for e in errors if "503" not in e] == []
    finally:
        server.close()


def test_an_alert_recovered_from_prometheus_is_marked_so(browser):
    firing = {"__name__": "ALERTS", "alertstate": "firing", "alertname": "BackendDown", "severity": "critical",
              "backend": "127.0.0.1:11434"}

    def alerts_series(method, url, kwargs):  # FAKE Prometheus: BackendDown fired for an hour, a day before the end
        start, end, step = (float(kwargs["params"][k]) for k in ("start", "end", "step"))
        grid = [start + i * step for i in range(int((end - start) // step) + 1)]
        values = [[t, "1"] for t in grid if end - 86400 <= t < end - 82800]
        return FakeResponse(200, {"status": "success", "data": {"resultType": "matrix",
                                                                "result": [{"metric": firing, "values": values}]}})

    routes = {**healthy_stack(), f"GET {PROM}/api/v1/query_range": alerts_series}
    settings = make_settings(ALERT_RECEIVER_TOKEN=TOKEN)
    # What the dashboard does at its start, into the history the page then reads.
    assert Backfiller(PromAPI(PROM, FakeHTTP(routes)), settings.alert_history_path, 30, time.time).attempt()
    base, server = serve(routes, settings=settings)
    try:
        page, errors = open_page(browser, base)
        row = page.locator('#alert-history tr[data-source="prometheus"]')
        row.wait_for(timeout=10_000)
        assert "BackendDown" in row.inner_text() and "from Prometheus" in row.inner_text()
        text = row.inner_text()
        assert "\tresolved\t" in text and "yes, " in text
        assert re.search(r"\t(5[6-9]|6[0-4]) min\t", text), text  # an hour, to the 260 s step of a 30-day window
        assert page.locator('#alert-history tr[data-source="alertmanager"]').count() == 0
        assert errors == []
    finally:
        server.close()


@pytest.fixture(scope="module")
def alerting():
    """The real Alertmanager and dashboard (nothing else of the stack), its history and silences new."""
    ownstack.fresh(HERE)
    overrides = ownstack.own_environ(
        HERE, OLLAMA_PORT=offset_port(22514), LITELLM_PORT=offset_port(18080), PROMETHEUS_PORT=offset_port(19180),
        DASHBOARD_PORT=offset_port(13081), NODE_EXPORTER_PORT=offset_port(19190), ALERTMANAGER_PORT=offset_port(19183),
        CANARY_INTERVAL="0", ALERT_GROUP_WAIT="1s", ALERT_GROUP_INTERVAL="1s")
    with ownstack.running(overrides, only=("alertmanager", "dashboard")) as instance:
        yield instance


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.integration
def test_silence_for_1_h_makes_a_silence_the_real_alertmanager_lists_and_applies(browser, alerting):
    am, dashboard = alerting.settings.alertmanager_url, alerting.settings.dashboard_url
    labels = {"alertname": "BackendDown", "severity": "critical", "backend": "127.0.0.1:11434",
              "instance": "127.0.0.1:3001", "job": "dashboard"}
    posted = requests.post(f"{am}/api/v2/alerts", timeout=5, json=[{  # as Prometheus posts a firing alert
        "labels": labels, "annotations": {"summary": "LLM backend down", "description": "It has not answered."},
        "startsAt": datetime.now(UTC).isoformat().replace("+00:00", "Z")}])
    assert posted.status_code == 200, posted.text

    def history():
        return requests.get(f"{dashboard}/api/alerts/history", params={"name": "BackendDown"}, timeout=5).json()["alerts"]

    assert poll_until(history, 30), "Alertmanager's notification never reached the dashboard's history"
    assert requests.get(f"{am}/api/v2/silences", timeout=5).json() == []
    page, errors = open_page(browser, dashboard)
    firing = page.locator("#alert-history tr.alert-firing", has_text="BackendDown")
    firing.wait_for(timeout=15_000)
    clicked = time.time()
    firing.locator("button.silence").click()
    page.wait_for_selector("#alert-history-message:not([hidden])", timeout=10_000)
    message = page.locator("#alert-history-message").inner_text()

    (made,) = requests.get(f"{am}/api/v2/silences", timeout=5).json()  # Alertmanager's own list
    assert made["status"]["state"] == "active" and made["createdBy"] == "llmops dashboard"
    assert {m["name"]: m["value"] for m in made["matchers"]} == labels
    assert all(m["isEqual"] and not m["isRegex"] for m in made["matchers"])
    assert abs(seconds(made["endsAt"]) - (clicked + 3600)) < 60, made["endsAt"]
    assert "silenced until" in message and made["id"] in message, message  # the page shows that silence
    assert firing.locator("button.silence").inner_text() == "silenced"
    drawn = firing.locator("button.silence").element_handle()
    page.select_option('#alert-history-filters select[name="since"]', "24h")  # the table drawn anew
    page.wait_for_function("button => !button.isConnected", arg=drawn, timeout=10_000)
    assert firing.locator("button.silence").inner_text() == "silenced"  # not offered again
    assert firing.locator("button.silence").is_disabled()
    # And Alertmanager applies it: the alert is held back, by that silence.
    (held,) = requests.get(f"{am}/api/v2/alerts", params={"filter": 'alertname="BackendDown"'}, timeout=5).json()
    assert held["status"]["state"] == "suppressed" and held["status"]["silencedBy"] == [made["id"]]
    # The dashboard says so from Alertmanager's answer, so a reloaded page does not offer the silence again.
    (row,) = history()
    assert row["silenced_until"] == made["endsAt"]
    page.reload()
    firing.wait_for(timeout=15_000)
    assert firing.locator("button.silence").inner_text() == "silenced"
    assert firing.locator("button.silence").is_disabled()
    assert errors == []
