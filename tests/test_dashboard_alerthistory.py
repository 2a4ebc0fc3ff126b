"""The dashboard as Alertmanager's receiver: the token, the history it keeps, bad input, and the silence action."""
from __future__ import annotations

import json
import os
import stat

import pytest

from llmops.dashboard import create_app
from llmops.telemetry.gpu import GpuReader
from tests.support.alerts import alert, notification
from tests.support.fakes.dashboard import ALERTMANAGER, FakeHTTP, FakeResponse, healthy_stack, make_settings
from tests.support.fakes.gpu import FakeNVML

NOW = 1_796_617_200.0  # 2026-12-07T04:20:00Z
TOKEN = "receiver-token-7d1f0e9a"
SECRETS = {"ALERT_RECEIVER_TOKEN": TOKEN, "ALERT_SMTP_PASSWORD": "smtp-password-91c2",
           "ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/slack-token-55ab"}


@pytest.fixture
def app(tmp_path):
    http = FakeHTTP(healthy_stack())
    settings = make_settings(ALERT_HISTORY_PATH=str(tmp_path / "alerts.db"), ALERT_HISTORY_DAYS="30", **SECRETS)
    clock = {"now": NOW}
    app = create_app({"SETTINGS": settings, "HTTP_SESSION": http, "START_MONITOR": False, "CLOCK": lambda: clock["now"],
                      "CACHE_SECONDS": 0, "GPU_READER": GpuReader(FakeNVML()), "SERVICE_PIDS": lambda: {}})
    app.extensions["llmops"]["monitor"].run_once()
    app.http, app.clock, app.db = http, clock, tmp_path / "alerts.db"
    return app


def send(client, doc, token=TOKEN, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = doc if isinstance(doc, (bytes, str)) else json.dumps(doc)
    return client.post("/api/alerts/webhook", data=data, headers=headers, content_type="application/json", **kwargs)


def history(client, query=""):
    answer = client.get(f"/api/alerts/history{query}")
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_a_firing_then_resolved_alert_is_one_history_row_that_says_how_long_it_fired(app):
    client = app.test_client()
    firing = alert(backend="127.0.0.1:11434", starts="2026-12-07T03:00:00.123456789Z")
    assert send(client, notification(firing)).get_json() == {"stored": 1, "status": "firing"}
    (row,) = history(client)["alerts"]
    assert (row["alertname"], row["state"], row["resolved"], row["ends_at"]) == ("BackendDown", "firing", False, None)
    assert row["starts_at"] == "2026-12-07T03:00:00+00:00" and row["duration_s"] == pytest.approx(4800 - 0.123, abs=0.01)
    assert row["summary"] == "BackendDown summary" and row["description"] == "BackendDown: why it fires"
    assert row["labels"]["backend"] == "127.0.0.1:11434"
    resolved = {**firing, "status": "resolved", "endsAt": "2026-12-07T03:05:00Z"}
    app.clock["now"] = NOW + 60
    assert send(client, notification(resolved)).status_code == 200
    (row,) = history(client)["alerts"]
    assert (row["state"], row["resolved"], row["ends_at"]) == ("resolved", True, "2026-12-07T03:05:00+00:00")
    assert row["duration_s"] == pytest.approx(300 - 0.123, abs=0.01) and row["notifications"] == 2
    assert history(client)["history"] == {"days": 30, "notifications": 2, "alerts": 1, "available": True, "detail": "",
                                         "backfill": {"state": "pending", "detail": ""}}


def test_a_late_firing_notice_does_not_reopen_a_resolved_alert(app):
    client = app.test_client()
    firing = alert()
    send(client, notification({**firing, "status": "resolved", "endsAt": "2026-12-07T03:05:00Z"}))
    send(client, notification(firing))
    (row,) = history(client)["alerts"]
    assert row["state"] == "resolved" and row["ends_at"] == "2026-12-07T03:05:00+00:00"


def test_the_same_alert_firing_again_later_is_a_new_row_and_newest_comes_first(app):
    client = app.test_client()
    first = alert(starts="2026-12-07T01:00:00Z")
    send(client, notification({**first, "status": "resolved", "endsAt": "2026-12-07T01:10:00Z"}))
    send(client, notification(alert(starts="2026-12-07T04:00:00Z")))
    send(client, notification(alert("ProxyDown", starts="2026-12-07T02:00:00Z")))
    rows = history(client)["alerts"]
    assert [(r["alertname"], r["starts_at"][11:16]) for r in rows] == [
        ("BackendDown", "04:00"), ("ProxyDown", "02:00"), ("BackendDown", "01:00")]


def test_history_filters_by_name_state_and_time(app):
    client = app.test_client()
    send(client, notification({**alert(starts="2026-12-07T01:00:00Z"), "status": "resolved",
                               "endsAt": "2026-12-07T01:10:00Z"}))
    send(client, notification(alert(starts="2026-12-07T04:00:00Z")))
    send(client, notification(alert("ProxyDown", starts="2026-12-07T02:00:00Z")))
    names = lambda q: [(r["alertname"], r["starts_at"][11:13]) for r in history(client, q)["alerts"]]  # noqa: E731
    assert names("?name=ProxyDown") == [("ProxyDown", "02")]
    assert names("?state=resolved") == [("BackendDown", "01")]
    assert names("?state=firing") == [("BackendDown", "04"), ("ProxyDown", "02")]
    # Active at some point in the last 2 hours (now is 04:20): the one resolved at 01:10 is left out.
    assert names("?since=2h") == [("BackendDown", "04"), ("ProxyDown", "02")]
    assert names("?until=2026-12-07T03:00:00Z") == [("ProxyDown", "02"), ("BackendDown", "01")]
    assert names("?limit=1") == [("BackendDown", "04")]


@pytest.mark.parametrize("query, param", [("?state=pending", "state"), ("?since=yesterday", "since"),
                                          ("?limit=0", "limit"), ("?limit=x", "limit")])
def test_a_bad_history_filter_is_a_400_naming_it(app, query, param):
    answer = app.test_client().get(f"/api/alerts/history{query}")
    assert answer.status_code == 400 and answer.get_json()["param"] == param


def test_the_history_is_pruned_after_the_kept_days(app):
    client = app.test_client()
    send(client, notification(alert(starts="2026-11-01T00:00:00Z")))
    app.clock["now"] = NOW + 31 * 86400
    send(client, notification(alert("ProxyDown", starts="2027-01-07T00:00:00Z")))
    assert [r["alertname"] for r in history(client, "?since=")["alerts"]] == ["ProxyDown"]
    assert history(client)["history"]["notifications"] == 1


def test_the_history_file_is_the_dashboard_s_own_and_private(app):
    send(app.test_client(), notification(alert()))
    assert stat.S_IMODE(os.stat(app.db).st_mode) == 0o600


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x"])
def test_a_notification_without_the_token_is_refused_and_not_stored(app, token):
    client = app.test_client()
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    answer = client.post("/api/alerts/webhook", json=notification(alert()), headers=headers)
    assert answer.status_code == 401 and "token" in answer.get_json()["error"]
    assert TOKEN not in answer.get_data(as_text=True)
    assert history(client)["alerts"] == []


def test_with_no_token_set_the_webhook_refuses_everything(tmp_path):
    settings = make_settings(ALERT_HISTORY_PATH=str(tmp_path / "alerts.db"))
    app = create_app({"SETTINGS": settings, "HTTP_SESSION": FakeHTTP({}), "START_MONITOR": False,
                      "GPU_READER": GpuReader(FakeNVML()), "SERVICE_PIDS": lambda: {}})
    answer = app.test_client().post("/api/alerts/webhook", json=notification(alert()), headers={"Authorization": "Bearer "})
    assert answer.status_code == 401 and "ALERT_RECEIVER_TOKEN is not set" in answer.get_json()["error"]


@pytest.mark.parametrize("body, param", [
    ("not json", "body"),
    ("[1, 2]", "body"),
    (json.dumps({**notification(alert()), "version": "3"}), "version"),
    (json.dumps({**notification(alert()), "status": "pending"}), "status"),
    (json.dumps({**notification(alert()), "alerts": []}), "alerts"),
    (json.dumps(notification({**alert(), "status": "maybe"})), "alerts[0].status"),
    (json.dumps(notification({**alert(), "labels": {"severity": "critical"}})), "alerts[0].labels"),
    (json.dumps(notification({**alert(), "labels": {"alertname": 3}})), "alerts[0].labels"),
    (json.dumps(notification({**alert(), "startsAt": "yesterday"})), "alerts[0].startsAt"),
    (json.dumps(notification({**alert(), "startsAt": "0001-01-01T00:00:00Z"})), "alerts[0].startsAt"),
    (json.dumps(notification({**alert(), "fingerprint": ""})), "alerts[0].fingerprint"),
])
def test_a_malformed_notification_is_a_400_naming_the_field_and_the_receiver_stays_up(app, body, param):
    client = app.test_client()
    answer = send(client, body)
    assert answer.status_code == 400 and answer.get_json()["param"] == param, answer.get_json()
    assert history(client)["alerts"] == []
    assert send(client, notification(alert())).status_code == 200  # the next good one is stored


def test_an_oversized_notification_is_refused_before_it_is_read(app):
    answer = send(app.test_client(), b"{" + b" " * (1 << 20) + b"}")
    assert answer.status_code == 413 and answer.get_json()["status"] == 413


def test_a_failed_write_rolls_back_and_closes_the_connection(app, monkeypatch):
    """A write that fails half-way leaves nothing behind, and the next notification is stored."""
    from llmops.alerts import store

    client = app.test_client()
    real = store.record
    opened = []

    def failing(conn, note, now, keep_days):
        opened.append(conn)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO notifications (received_at, status, receiver, group_key, alerts, truncated) "
                     "VALUES (1, 'firing', 'x', 'x', 1, 0)")
        conn.execute("ROLLBACK")
        raise OSError("disk full")

    monkeypatch.setattr(store, "record", failing)
    app.testing = False
    assert send(client, notification(alert())).status_code == 500
    with pytest.raises(Exception, match="closed"):
        opened[0].execute("SELECT 1")  # given back on the error path too
    monkeypatch.setattr(store, "record", real)
    assert send(client, notification(alert())).status_code == 200
    assert history(client)["history"]["notifications"] == 1


def csrf(app) -> str:
    return app.extensions["llmops"]["csrf_token"]


def test_the_page_carries_the_csrf_token_and_the_history_section(app):
    page = app.test_client().get("/").get_data(as_text=True)
    assert f'<meta name="csrf-token" content="{csrf(app)}">' in page
    assert 'id="alert-history-section"' in page and "alerts.js" in page


def test_silence_for_an_hour_posts_an_exact_silence_to_alertmanager(app):
    app.http.routes[f"POST {ALERTMANAGER}/api/v2/silences"] = FakeResponse(200, {"silenceID": "5f1e-silence"})
    labels = {"alertname": "BackendDown", "backend": "127.0.0.1:11434", "severity": "critical"}
    answer = app.test_client().post("/api/alerts/silence", json={"labels": labels},
                                    headers={"X-CSRF-Token": csrf(app), "Origin": "http://localhost"})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"silence_id": "5f1e-silence", "ends_at": "2026-12-07T05:20:00.000Z", "hours": 1.0}
    (call,) = [c for c in app.http.calls if c["url"].endswith("/api/v2/silences")]
    assert call["json"]["matchers"] == [{"name": k, "value": v, "isRegex": False, "isEqual": True}
                                        for k, v in sorted(labels.items())]
    assert (call["json"]["startsAt"], call["json"]["endsAt"]) == ("2026-12-07T04:20:00.000Z", "2026-12-07T05:20:00.000Z")


@pytest.mark.parametrize("headers", [{}, {"X-CSRF-Token": "guess"}, {"Origin": "http://evil.example"}])
def test_a_silence_the_page_did_not_send_is_refused(app, headers):
    app.http.routes[f"POST {ALERTMANAGER}/api/v2/silences"] = FakeResponse(200, {"silenceID": "x"})
    if "Origin" in headers:
        headers = {**headers, "X-CSRF-Token": csrf(app)}
    answer = app.test_client().post("/api/alerts/silence", json={"labels": {"alertname": "BackendDown"}}, headers=headers)
    assert answer.status_code == 403
    assert not [c for c in app.http.calls if c["url"].endswith("/api/v2/silences")]


@pytest.mark.parametrize("body", [{}, {"labels": {}}, {"labels": {"severity": "x"}}, {"labels": {"alertname": ""}},
                                  {"labels": {"alertname": "A", "bad-name": "x"}}, {"labels": {"alertname": 3}}])
def test_a_bad_silence_is_a_400_naming_labels(app, body):
    answer = app.test_client().post("/api/alerts/silence", json=body, headers={"X-CSRF-Token": csrf(app)})
    assert answer.status_code == 400 and answer.get_json()["param"] == "labels"


def test_alertmanager_down_makes_the_silence_a_503_that_says_so(app):
    answer = app.test_client().post("/api/alerts/silence", json={"labels": {"alertname": "BackendDown"}},
                                    headers={"X-CSRF-Token": csrf(app)})
    assert answer.status_code == 503 and "Alertmanager cannot be reached" in answer.get_json()["error"]


def am_alerts(*pairs):
    """Alertmanager's GET /api/v2/alerts: (fingerprint, silencedBy) pairs."""
    return FakeResponse(200, [{"fingerprint": f, "labels": {}, "status": {"state": "suppressed" if ids else "active",
                                                                          "silencedBy": ids, "inhibitedBy": []}}
                              for f, ids in pairs])


def am_silences(*silences):
    return FakeResponse(200, [{"id": i, "status": {"state": state}, "endsAt": ends, "matchers": []}
                              for i, state, ends in silences])


def test_a_firing_alert_held_back_by_a_silence_says_until_when(app):
    client = app.test_client()
    held, free, over = alert(backend="a"), alert(backend="b"), alert(backend="c")
    send(client, notification(held, free))
    send(client, notification({**over, "status": "resolved", "endsAt": "2026-12-07T03:05:00Z"}))
    app.http.routes[f"GET {ALERTMANAGER}/api/v2/alerts"] = am_alerts(
        (held["fingerprint"], ["s-new", "s-old", "s-gone"]), (free["fingerprint"], []), (over["fingerprint"], ["s-new"]))
    app.http.routes[f"GET {ALERTMANAGER}/api/v2/silences"] = am_silences(
        ("s-new", "active", "2026-12-07T05:20:00.000Z"), ("s-old", "active", "2026-12-07T04:50:00.000Z"),
        ("s-gone", "expired", "2026-12-07T06:00:00.000Z"))
    doc = history(client)
    until = {row["labels"]["backend"]: row["silenced_until"] for row in doc["alerts"]}
    # the latest end of the active silences holding it; a resolved alert has nothing to silence
    assert until == {"a": "2026-12-07T05:20:00.000Z", "b": None, "c": None}
    assert doc["alertmanager"]["silences"] == {"known": True, "detail": ""}


@pytest.mark.parametrize("alerts_answer", [None, FakeResponse(500, text="boom"), FakeResponse(200, {"not": "a list"}),
                                           FakeResponse(200, [{"fingerprint": "x"}])])
def test_alertmanager_down_or_odd_leaves_the_history_whole_and_says_why(app, alerts_answer):
    client = app.test_client()
    send(client, notification(alert()))
    if alerts_answer is not None:
        app.http.routes[f"GET {ALERTMANAGER}/api/v2/alerts"] = alerts_answer
        app.http.routes[f"GET {ALERTMANAGER}/api/v2/silences"] = am_silences()
    doc = history(client)
    (row,) = doc["alerts"]
    assert row["state"] == "firing" and row["silenced_until"] is None
    silences = doc["alertmanager"]["silences"]
    assert silences["known"] is False and "Alertmanager" in silences["detail"]


def test_alertmanager_is_not_asked_when_nothing_fires(app):
    client = app.test_client()
    send(client, notification(alert(status="resolved", ends="2026-12-07T03:05:00Z")))
    assert [row["silenced_until"] for row in history(client)["alerts"]] == [None]
    assert not [c for c in app.http.calls if "/api/v2/alerts" in c["url"] or "/api/v2/silences" in c["url"]]


def test_no_secret_reaches_a_page_or_an_answer(app):
    client = app.test_client()
    send(client, notification(alert(summary=SECRETS["ALERT_SMTP_PASSWORD"])))  # even one a label carried
    for route in ("/", "/api/status", "/api/alerts/history", "/api/alerts", "/metrics", "/static/alerts.js"):
        text = client.get(route).get_data(as_text=True)
        assert not [name for name, value in SECRETS.items() if value in text], route


def test_reading_an_empty_history_makes_no_file(app):
    assert history(app.test_client())["alerts"] == [] and not app.db.exists()


def test_an_unreadable_history_is_a_status_not_a_500_and_the_webhook_asks_for_a_retry(app):
    app.db.write_bytes(b"this is not an SQLite file" * 100)
    client = app.test_client()
    body = history(client)
    assert body["alerts"] == [] and body["history"]["available"] is False
    assert "cannot read the alert history alerts.db" in body["history"]["detail"]
    answer = send(client, notification(alert()))
    assert answer.status_code == 503 and "cannot write the alert history" in answer.get_json()["error"]
    app.db.unlink()
    assert send(client, notification(alert())).status_code == 200  # back once the file is
