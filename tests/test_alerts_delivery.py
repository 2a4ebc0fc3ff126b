"""Alerts delivered for real: Prometheus fires BackendDown (its rule from rules/, made to fire at once), Alertmanager
sends it to the dashboard's history, a webhook, a Slack-shaped fake and an SMTP sink, and then the resolved notice.

A stack of its own (its ports, state, env file and a Prometheus config whose only rule is BackendDown with
`for: 0s`, evaluated every second), with the receivers in threads of this process.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests
import yaml

from llmops.polling import poll_until
from llmops.stack import Stack
from tests.support import ownstack
from tests.support.env import ROOT, offset_port, test_environ
from tests.support.fakes.receivers import FakeHTTPReceiver, SMTPSink

pytestmark = pytest.mark.integration
HERE = ROOT / ".run-test" / "ad"
SMTP_LOGIN = ("llmops", "smtp-secret-pw-3e1b")
SLACK_PATH = "/services/T0/B0/slack-secret-token-9f2c"
WEBHOOK_TOKEN = "webhook-secret-token-c41d"
WAIT = 30.0  # seconds from the backend stopping to every receiver having the notice (group_wait is 1 s here)


_ENVIRON: dict[str, str] = {}  # this module's settings, for the commands it runs


def fast_rules(target: Path) -> None:
    """BackendDown exactly as rules/ has it, but firing at its first true evaluation."""
    groups = yaml.safe_load((ROOT / "rules" / "llm_stack.rules.yml").read_text())["groups"]
    (rule,) = [r for g in groups for r in g["rules"] if r.get("alert") == "BackendDown"]
    target.write_text(yaml.safe_dump({"groups": [{"name": "fast", "rules": [{**rule, "for": "0s"}]}]}))


def prometheus_config(target: Path) -> None:
    config = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    config["rule_files"] = ["fast.rules.yml"]
    target.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def receivers():
    http, smtp = FakeHTTPReceiver(), SMTPSink(login=SMTP_LOGIN)
    yield http, smtp
    http.stop()
    smtp.stop()


@pytest.fixture(scope="module")
def stack(receivers):
    http, smtp = receivers
    ownstack.fresh(HERE)
    fast_rules(HERE / "fast.rules.yml")
    prometheus_config(HERE / "prometheus.yml")
    overrides = ownstack.own_environ(
        HERE,
        OLLAMA_PORT=offset_port(22494), LITELLM_PORT=offset_port(18060), PROMETHEUS_PORT=offset_port(19160),
        DASHBOARD_PORT=offset_port(13061), NODE_EXPORTER_PORT=offset_port(19170), ALERTMANAGER_PORT=offset_port(19163),
        PROMETHEUS_CONFIG=str(HERE / "prometheus.yml"),
        CANARY_INTERVAL="0", ALERT_GROUP_WAIT="1s", ALERT_GROUP_INTERVAL="1s",
        ALERT_WEBHOOK_URL=http.url("/hook"), ALERT_WEBHOOK_TOKEN=WEBHOOK_TOKEN, ALERT_SLACK_WEBHOOK_URL=http.url(SLACK_PATH),
        ALERT_SMTP_HOST="127.0.0.1", ALERT_SMTP_PORT=str(smtp.port), ALERT_SMTP_TLS="false",
        ALERT_SMTP_FROM="llmops@example.com", ALERT_SMTP_TO="ops@example.com",
        ALERT_SMTP_USER=SMTP_LOGIN[0], ALERT_SMTP_PASSWORD=SMTP_LOGIN[1],
    )
    _ENVIRON.update(overrides)
    with ownstack.running(overrides) as instance:
        yield instance


def history(stack, **params) -> list[dict]:
    answer = requests.get(f"{stack.settings.dashboard_url}/api/alerts/history", params={"name": "BackendDown", **params},
                          timeout=5)
    assert answer.status_code == 200
    return answer.json()["alerts"]


def delivered(stack, http, smtp, state: str) -> dict[str, bool]:
    """Which receivers have a BackendDown notice in this state."""
    word = state.upper()
    hooks = [a for doc in http.received("/hook") for a in doc["alerts"]
             if a["labels"]["alertname"] == "BackendDown" and a["status"] == state]
    slack = [doc for doc in http.received(SLACK_PATH)
             if any(f"[{word}" in a.get("title", "") and "BackendDown" in a.get("title", "")
                    for a in doc.get("attachments", []))]
    mail = [s for s in smtp.subjects() if s.startswith(f"[{word}] BackendDown")]
    return {"dashboard": any(r["state"] == state for r in history(stack)), "webhook": bool(hooks),
            "slack": bool(slack), "email": bool(mail)}


def test_backend_down_reaches_every_receiver_then_its_resolved_notice(stack, receivers):
    http, smtp = receivers
    ready = poll_until(lambda: requests.get(f"{stack.settings.dashboard_url}/api/status", timeout=5).json()
                       ["components"]["ollama"]["status"] == "healthy", 60)
    assert ready, "the backend never came up"
    assert history(stack) == []
    stack.stop("ollama")
    stopped = time.monotonic()
    try:
        got = poll_until(lambda: all(delivered(stack, http, smtp, "firing").values()), WAIT)
        assert got, f"firing notices after {WAIT} s: {delivered(stack, http, smtp, 'firing')}"
        print(f"BackendDown at every receiver {time.monotonic() - stopped:.1f} s after the backend stopped")
    finally:
        stack.start("ollama")
    (row,) = history(stack)
    assert row["severity"] == "critical" and row["summary"].startswith("LLM backend ") and "is down" in row["summary"]
    assert row["description"].startswith("The backend has not answered")  # the rule's reason text
    hook = next(doc for doc in http.received("/hook") if doc["status"] == "firing")
    assert hook["version"] == "4" and hook["receiver"] == "webhook"
    assert next(p for p in http.posts if p["path"] == "/hook")["headers"]["Authorization"] == f"Bearer {WEBHOOK_TOKEN}"
    mail = next(m for m in smtp.messages if str(m["Subject"]).startswith("[FIRING]"))
    assert mail["From"] == "llmops@example.com" and mail["To"] == "ops@example.com"
    assert smtp.envelopes[0][1] == ["ops@example.com"] and (SMTP_LOGIN[0], True) in smtp.logins

    back = time.monotonic()
    got = poll_until(lambda: all(delivered(stack, http, smtp, "resolved").values()), 60)
    assert got, f"resolved notices: {delivered(stack, http, smtp, 'resolved')}"
    print(f"resolved at every receiver {time.monotonic() - back:.1f} s after the backend was started again")
    (row,) = history(stack)
    assert row["resolved"] and row["ends_at"] and row["duration_s"] > 0


def test_a_notification_without_the_token_is_refused_by_the_real_dashboard(stack):
    url = f"{stack.settings.dashboard_url}/api/alerts/webhook"
    for headers in ({}, {"Authorization": "Bearer forged"}):
        answer = requests.post(url, json={"version": "4"}, headers=headers, timeout=5)
        assert answer.status_code == 401 and answer.json()["status"] == 401


def alerts_test(*args: str, **settings: str) -> subprocess.CompletedProcess:
    """`make alerts-test` (its command) against this module's stack, with `settings` changed."""
    env = {**test_environ(), **_ENVIRON, **settings}
    return subprocess.run([sys.executable, "-m", "llmops", "alerts", "test", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_alerts_test_reports_each_receiver_and_names_the_one_that_failed(stack, receivers):
    http, smtp = receivers
    result = alerts_test("--timeout", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(lines) == {"dashboard", "webhook", "slack", "email"}, result.stdout
    assert all(" sent" in line for line in lines.values()), result.stdout
    assert poll_until(lambda: history(stack, name="LlmopsTestAlert"), 20)  # the dashboard has it too
    http.failing = True  # the Slack-shaped fake (and the webhook: one server) answers 503 now
    try:
        result = alerts_test("--timeout", "20")
    finally:
        http.failing = False
    assert result.returncode == 1, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "FAILED" in lines["slack"] and "503" in lines["slack"], result.stdout
    assert "FAILED" in lines["webhook"] and " sent" in lines["dashboard"] and " sent" in lines["email"], result.stdout
    assert "slack-secret-token-9f2c" not in result.stdout + result.stderr
    assert WEBHOOK_TOKEN not in result.stdout + result.stderr


def test_alerts_test_names_a_receiver_that_cannot_be_reached_and_the_others_still_get_it(stack):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))  # bound, never listening: a connection is refused, and nothing else can take it
        refused = f"http://127.0.0.1:{held.getsockname()[1]}/hook"
        # ALERT_WEBHOOK_URL changed, then what `make restart-alertmanager` does: the config rendered anew, a restart.
        Stack(ownstack.load({**_ENVIRON, "ALERT_WEBHOOK_URL": refused}), out=print).restart("alertmanager")
        try:
            assert refused in (stack.settings.state_dir / "alertmanager.yml").read_text()
            result = alerts_test("--timeout", "20", ALERT_WEBHOOK_URL=refused)
        finally:
            stack.restart("alertmanager")  # the module's receivers again
    print(result.stdout)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(lines) == {"dashboard", "webhook", "slack", "email"}, result.stdout
    assert "FAILED" in lines["webhook"] and "connection refused" in lines["webhook"], result.stdout
    # The dashboard shares the webhook integration with it: still sent, as are the others.
    assert all(" sent" in lines[name] for name in ("dashboard", "slack", "email")), result.stdout
    assert refused not in result.stdout + result.stderr  # a receiver's URL is a secret of .env
    assert refused not in (stack.settings.state_dir / "alertmanager.yml").read_text()


def test_no_secret_is_in_a_log_a_page_or_the_api(stack):
    # Failed sends are in Alertmanager's log by now (alerts-test made the webhook and Slack answer 503).
    secrets = [SMTP_LOGIN[1], "slack-secret-token-9f2c", WEBHOOK_TOKEN, stack.settings.alert_receiver_token, stack.key]
    logs = list(stack.settings.log_dir.glob("*.log"))
    assert any(p.name.startswith("alertmanager") for p in logs), [p.name for p in logs]
    for path in logs:
        text = path.read_text(errors="replace")
        assert not [s for s in secrets if s in text], path
    base = stack.settings.dashboard_url
    for route in ("/", "/api/status", "/api/alerts/history", "/api/alerts", "/metrics"):
        text = requests.get(base + route, timeout=10).text
        assert not [s for s in secrets if s in text], route
    assert not [s for s in secrets if s in (stack.settings.state_dir / "settings.json").read_text()]


def post_alert(stack, name: str, starts: str, ends: str | None = None) -> None:
    """An alert as Prometheus posts it (ends set: resolved)."""
    alert = {"labels": {"alertname": name, "severity": "warning"}, "annotations": {"summary": f"{name} summary"},
             "startsAt": starts, **({"endsAt": ends} if ends else {})}
    answer = requests.post(f"{stack.settings.alertmanager_url}/api/v2/alerts", json=[alert], timeout=5)
    assert answer.status_code == 200, answer.text


def rows(stack, name: str) -> list[dict]:
    return history(stack, name=name)


def failed_webhook_sends(stack) -> float:
    text = requests.get(f"{stack.settings.alertmanager_url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("alertmanager_notifications_failed_total{") and 'integration="webhook"' in line)


def test_the_dashboard_down_makes_alertmanager_retry_and_the_latest_state_arrives(stack):
    """Fired before the outage and resolved during it: the resolved notice arrives; fired during it: the firing one."""
    stamp = int(time.time())
    before, during = f"OutageBefore{stamp}", f"OutageDuring{stamp}"
    now = lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # noqa: E731
    started = now()
    post_alert(stack, before, started)
    assert poll_until(lambda: rows(stack, before), 30), "the first notice never reached the dashboard"
    failed = failed_webhook_sends(stack)
    stack.stop("dashboard")
    try:
        post_alert(stack, before, started, ends=now())
        post_alert(stack, during, now())
        # Alertmanager tries, fails (nothing listens) and keeps the notices to try again.
        assert poll_until(lambda: failed_webhook_sends(stack) > failed, 30), "Alertmanager never tried the dashboard"
    finally:
        stack.start("dashboard")
    assert poll_until(lambda: [r["state"] for r in rows(stack, before)] == ["resolved"], 60), rows(stack, before)
    assert poll_until(lambda: [r["state"] for r in rows(stack, during)] == ["firing"], 60), rows(stack, during)


def prometheus_firing(stack, name: str) -> list[dict]:
    """The series of ALERTS{alertname=name, alertstate="firing"} now, as Prometheus answers it."""
    answer = requests.get(f"{stack.settings.prometheus_url}/api/v1/query",
                          params={"query": f'ALERTS{{alertname="{name}",alertstate="firing"}}'}, timeout=5)
    return answer.json()["data"]["result"]


def alertmanager_active(stack, name: str) -> list[dict]:
    answer = requests.get(f"{stack.settings.alertmanager_url}/api/v2/alerts",
                          params={"filter": f'alertname="{name}"', "active": "true"}, timeout=5)
    return [a for a in answer.json() if a["status"]["state"] == "active"]


def failed_webhook_attempts(stack) -> float:
    """Alertmanager's failed sends to the webhook integration (only the stopped dashboard fails here)."""
    text = requests.get(f"{stack.settings.alertmanager_url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("alertmanager_notification_requests_failed_total{")
               and 'integration="webhook"' in line)


def settled(stack, since: float, quiet: float = 3.0):
    """A condition: Alertmanager has stopped retrying the dashboard, past its retry window (max(group_interval,
    10 s) after the last notification that began while the alert fired) and with no failed attempt for `quiet` s."""
    last = {"count": -1.0, "at": 0.0}

    def condition() -> bool:
        count, now = failed_webhook_attempts(stack), time.time()
        if now - since < 12 or count != last["count"]:
            last.update(count=count, at=now)
            return False
        return now - last["at"] >= quiet

    return condition


def test_an_alert_that_fired_and_resolved_while_the_dashboard_was_down_is_recovered_from_prometheus(stack):
    """Alertmanager never sends the dashboard a resolved-only notice; the dashboard finds it in Prometheus at its start.

    Here the rule fires at the first up == 0, so one scrape of the backend past its 1 s timeout is an occurrence:
    BackendDown may flap while the backend comes back (one or more intervals, all inside the outage), and an earlier
    test's outage of the dashboard may have left one inside the backfill's margin (before this outage: not this
    test's)."""
    assert poll_until(lambda: not prometheus_firing(stack, "BackendDown"), 60), "BackendDown fires before the test"
    stack.stop("dashboard")
    try:
        stopped = time.time()
        stack.stop("ollama")
        try:
            assert poll_until(lambda: prometheus_firing(stack, "BackendDown"), WAIT), "BackendDown never fired"
            told = poll_until(lambda: alertmanager_active(stack, "BackendDown"), WAIT)
            assert told, "Alertmanager never had BackendDown"
        finally:
            stack.start("ollama")
        assert poll_until(lambda: not prometheus_firing(stack, "BackendDown"), 60), "BackendDown never resolved"
        resolved = time.time()
        assert poll_until(lambda: not alertmanager_active(stack, "BackendDown"), 30), "Alertmanager kept it active"
        assert poll_until(settled(stack, resolved), 60), "Alertmanager kept retrying the dashboard"
    finally:
        back = time.time()
        stack.start("dashboard")

    def in_outage() -> list[dict]:
        return [r for r in history(stack, source="prometheus")
                if datetime.fromisoformat(r["starts_at"]).timestamp() > stopped]

    recovered = poll_until(in_outage, 30)
    assert recovered, f"nothing recovered: {history(stack)}"
    spans = [tuple(datetime.fromisoformat(r[k]).timestamp() for k in ("starts_at", "ends_at")) for r in recovered]
    for (starts, ends) in sorted(spans):
        print(f"recovered BackendDown: fired {starts - stopped:.1f} s after the dashboard stopped, for {ends - starts:.1f} s")
    assert all(stopped < starts < ends <= back + 1 for starts, ends in spans), (stopped, back, spans)
    first = min(spans)
    assert first[1] <= resolved + 1  # the outage's own occurrence ended when Prometheus said it resolved
    for row in recovered:
        assert row["resolved"] and row["state"] == "resolved"
        assert row["severity"] == "critical" and row["notifications"] == 0
        assert row["summary"].startswith("LLM backend ") and row["summary"].endswith(" is down")
        assert row["unrendered"] == [] and row["description"].startswith("The backend has not answered")
        assert row["fingerprint"] == told[0]["fingerprint"]  # Alertmanager's own, computed from the same labels
    earliest = min(r["starts_at"] for r in recovered)
    assert not [r for r in history(stack) if r["source"] == "alertmanager" and r["starts_at"] >= earliest]
    for _ in range(2):  # restarted twice: the intervals are not recovered again
        stack.restart("dashboard")
        assert poll_until(lambda: requests.get(f"{stack.settings.dashboard_url}/api/alerts/history", timeout=5)
                          .json()["history"]["backfill"]["state"] == "done", 30)
        assert in_outage() == recovered
