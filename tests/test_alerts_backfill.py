"""The alert history recovered from Prometheus's ALERTS series at the dashboard's start (llmops/alerts/backfill.py):
the intervals, the window, the merge with what Alertmanager delivered, and bad or missing answers.

Prometheus here is FAKE: FakeHTTP answering its HTTP API's JSON to the real PromAPI client.
"""
from __future__ import annotations

import json
import logging
import sqlite3

import pytest
import requests

from llmops.alerts import backfill, store
from llmops.dashboard import create_app
from llmops.dashboard.promapi import PromAPI, Series
from llmops.telemetry.gpu import GpuReader
from tests.support.alerts import alert, notification
from tests.support.fakes.dashboard import PROM, FakeHTTP, FakeResponse, healthy_stack, make_settings
from tests.support.fakes.gpu import FakeNVML

NOW = 1_796_617_200.0  # 2026-12-07T04:20:00Z
EVAL = 10.0  # the fake's evaluation interval
TOKEN = "receiver-token-7d1f0e9a"
DOWN = {"alertname": "BackendDown", "severity": "critical", "backend": "127.0.0.1:11434"}
RULES = {"groups": [{"name": "llm", "rules": [
    {"type": "alerting", "name": "BackendDown", "labels": {"severity": "critical"}, "annotations": {
        "summary": "LLM backend {{ if $labels.backend }}{{ $labels.backend }}{{ else }}{{ $labels.instance }}{{ end }} is down",
        "description": "The backend has not answered for 1 minute."}},
    {"type": "alerting", "name": "HighErrorRatio", "annotations": {"summary": "{{ $value | humanizePercentage }} fail"}},
    {"type": "recording", "name": "job:x"}, "not a rule"]}]}


class FakePrometheus:
    """FAKE Prometheus HTTP API: ALERTS samples as [(labels, [unix seconds...])], answered for the asked range."""

    def __init__(self, firing=(), rules=RULES):
        self.firing, self.rules, self.ranges, self.down = list(firing), rules, [], False

    def routes(self) -> dict:
        return {f"GET {PROM}/api/v1/query_range": self.query_range, f"GET {PROM}/api/v1/rules": self.rules_answer}

    def query_range(self, method, url, kwargs):
        if self.down:
            return requests.ConnectionError("connection refused")
        params = kwargs["params"]
        start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
        self.ranges.append((params["query"], start, end, step))
        result = []
        for labels, times in self.firing:
            # a range query answers on the step grid, at each grid time that has a sample less than one evaluation
            # before it (Prometheus marks the series stale at the evaluation after the alert's last)
            grid = [start + k * step for k in range(int((end - start) // step) + 1)]
            values = [[t, "1"] for t in grid if any(t - EVAL < s <= t for s in times)]
            if values:
                result.append({"metric": {"__name__": "ALERTS", "alertstate": "firing", **labels}, "values": values})
        return FakeResponse(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})

    def rules_answer(self, method, url, kwargs):
        return FakeResponse(200, {"status": "success", "data": self.rules})


def every(start: float, end: float, step: float = EVAL) -> list[float]:
    """Evaluation times from start to end (an alert firing through them)."""
    return [start + k * step for k in range(int((end - start) // step) + 1)]


@pytest.fixture
def env(tmp_path):
    prom = FakePrometheus()
    http = FakeHTTP({**healthy_stack(), **prom.routes()})
    settings = make_settings(ALERT_HISTORY_PATH=str(tmp_path / "alerts.db"), ALERT_HISTORY_DAYS="1",
                             ALERT_RECEIVER_TOKEN=TOKEN)
    clock = {"now": NOW}
    app = create_app({"SETTINGS": settings, "HTTP_SESSION": http, "START_MONITOR": False, "CLOCK": lambda: clock["now"],
                      "CACHE_SECONDS": 0, "GPU_READER": GpuReader(FakeNVML()), "SERVICE_PIDS": lambda: {}})
    app.prom, app.clock, app.db = prom, clock, tmp_path / "alerts.db"
    app.backfill = app.extensions["llmops"]["backfill"]
    return app


def rows(app, query=""):
    answer = app.test_client().get(f"/api/alerts/history{query}")
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["alerts"]


def test_each_contiguous_run_of_samples_is_one_interval_and_a_run_at_the_end_is_still_firing():
    series = [Series({"__name__": "ALERTS", "alertstate": "firing", **DOWN},
                     [(100.0, 1.0), (101.0, 1.0), (102.0, 1.0), (110.0, 1.0), (111.0, None), (119.0, 1.0), (120.0, 1.0)]),
              Series({"__name__": "ALERTS", "alertstate": "firing"}, [(100.0, 1.0)])]  # no alertname: not an alert
    found = backfill.intervals(series, end=120.0, step=1.0, annotations={})
    assert [(f.starts_at, f.ends_at) for f in found] == [(100.0, 103.0), (110.0, 111.0), (119.0, None)]
    assert all(f.labels == DOWN for f in found)  # __name__ and alertstate are the series', not the alert's


def test_the_rule_annotations_are_rendered_where_they_only_use_labels():
    notes = backfill.rule_annotations(RULES["groups"])
    assert set(notes) == {"BackendDown", "HighErrorRatio"}
    assert backfill.render(notes["BackendDown"]["summary"], DOWN) == "LLM backend 127.0.0.1:11434 is down"
    assert backfill.render(notes["BackendDown"]["summary"], {"instance": "h:1"}) == "LLM backend h:1 is down"
    assert backfill.render(notes["HighErrorRatio"]["summary"], {}) == notes["HighErrorRatio"]["summary"]  # needs $value
    assert backfill.rule_annotations({"groups": "x"}) == {} and backfill.rule_annotations([{"rules": 3}]) == {}


def test_the_fingerprint_is_alertmanagers():
    assert backfill.fingerprint({}) == "cbf29ce484222325"  # FNV-1a 64's offset basis: Prometheus's empty label set
    assert backfill.fingerprint(DOWN) == backfill.fingerprint(dict(reversed(DOWN.items())))


def test_the_window_starts_before_the_dashboard_was_last_up_and_never_before_the_history_keeps(tmp_path):
    with store.connect(tmp_path / "a.db") as conn:
        assert backfill.window(conn, NOW, 2) == (NOW - 2 * 86400, NOW)  # a new history: all it keeps
        store.set_meta(conn, "up_until", NOW - 3600)
        assert backfill.window(conn, NOW, 2) == (NOW - 3600 - backfill.MARGIN_S, NOW)
        store.set_meta(conn, "up_until", NOW - 5 * 86400)
        assert backfill.window(conn, NOW, 2) == (NOW - 2 * 86400, NOW)
    assert backfill.step_for(0, 3600) == 1.0 and backfill.step_for(0, 86400) == 9.0  # at most 10,000 points


def test_an_alert_that_fired_and_resolved_while_the_dashboard_was_down_is_recovered_once(env):
    env.prom.firing = [(DOWN, every(NOW - 900, NOW - 600))]  # fired 15 min ago for 5 min
    assert env.backfill.attempt()
    ((query, start, end, step),) = env.prom.ranges
    assert query == 'ALERTS{alertstate="firing"}' and step == 9.0 and end == NOW
    assert NOW - 86400 - step < start <= NOW - 86400 and start % step == 0  # a day, on the step's grid
    (row,) = rows(env)
    assert (row["alertname"], row["state"], row["resolved"], row["source"]) == ("BackendDown", "resolved", True, "prometheus")
    assert NOW - 900 <= env_time(row["starts_at"]) < NOW - 900 + step
    assert NOW - 600 < env_time(row["ends_at"]) <= NOW - 600 + EVAL + step
    assert row["summary"] == "LLM backend 127.0.0.1:11434 is down" and row["unrendered"] == []
    assert row["notifications"] == 0 and row["labels"] == DOWN
    assert env.backfill.status == {"state": "done", "detail": "", "added": 1, "updated": 0, "covered": 0}
    for later in (60, 120):  # restarted twice: the same interval is not added again
        env.clock["now"] = NOW + later
        assert env.backfill.attempt()
        assert len(rows(env)) == 1 and env.backfill.status["added"] == 0
    assert env.prom.ranges[-1][1] == NOW + 60 - backfill.MARGIN_S  # from where the last run left it (1 s steps)


def env_time(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_a_recovered_alert_still_firing_is_closed_by_a_later_backfill(env):
    env.prom.firing = [(DOWN, every(NOW - 300, NOW))]
    assert env.backfill.attempt()
    (row,) = rows(env)
    assert row["state"] == "firing" and row["ends_at"] is None
    env.clock["now"] = NOW + 600
    env.prom.firing = [(DOWN, every(NOW - 300, NOW + 200))]
    assert env.backfill.attempt()
    (row,) = rows(env)
    assert row["state"] == "resolved" and NOW + 200 < env_time(row["ends_at"]) <= NOW + 200 + EVAL + 1
    assert env.backfill.status["updated"] == 1


def test_what_alertmanager_delivered_is_not_recovered_again_and_its_notice_replaces_a_recovered_one(env):
    client = env.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    told = alert(starts="2026-12-07T04:16:40Z", backend="127.0.0.1:11434")  # NOW - 200 s
    assert client.post("/api/alerts/webhook", json=notification(told), headers=headers).status_code == 200
    other = {**DOWN, "backend": "127.0.0.1:11435"}
    env.prom.firing = [(DOWN, every(NOW - 195, NOW)), (other, every(NOW - 300, NOW))]
    env.clock["now"] = NOW + 1
    assert env.backfill.attempt()
    assert env.backfill.status["added"] == 1 and env.backfill.status["covered"] == 1
    assert sorted((r["labels"]["backend"], r["source"]) for r in rows(env)) == [
        ("127.0.0.1:11434", "alertmanager"), ("127.0.0.1:11435", "prometheus")]
    assert [r["labels"]["backend"] for r in rows(env, "?source=prometheus")] == ["127.0.0.1:11435"]
    # Alertmanager now delivers the still-firing one (it retried): one row, as Alertmanager tells it.
    late = alert(starts="2026-12-07T04:15:00Z", backend="127.0.0.1:11435")
    assert client.post("/api/alerts/webhook", json=notification(late), headers=headers).status_code == 200
    assert sorted((r["labels"]["backend"], r["source"]) for r in rows(env)) == [
        ("127.0.0.1:11434", "alertmanager"), ("127.0.0.1:11435", "alertmanager")]
    env.clock["now"] = NOW + 120
    assert env.backfill.attempt() and len(rows(env)) == 2  # and a later backfill finds it covered


def test_prometheus_down_is_one_log_line_a_status_and_a_later_try(env, caplog):
    env.prom.down = True
    with caplog.at_level(logging.INFO, logger="llmops.dashboard.backfill"):
        assert not env.backfill.attempt() and not env.backfill.attempt()
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and "unreachable" in lines[0] and "trying again every 60 s" in lines[0], lines
        answer = env.test_client().get("/api/alerts/history").get_json()
        assert answer["history"]["backfill"]["state"] == "waiting" and "unreachable" in answer["history"]["backfill"]["detail"]
        env.prom.down = False
        env.prom.firing = [(DOWN, every(NOW - 900, NOW - 600))]
        assert env.backfill.attempt() and len(rows(env)) == 1
        assert "1 added" in caplog.records[-1].getMessage()


@pytest.mark.parametrize("body", [
    {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": DOWN, "values": [["x", "1"]]}]}},
    {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": DOWN, "values": 7}]}},
    {"status": "success", "data": {"result": "nonsense"}},
    {"status": "success", "data": {"result": [{"metric": "x", "values": []}]}},
    {"status": "error", "error": "query timed out"},
    None,
])
def test_a_bad_answer_from_prometheus_is_a_status_never_a_crash(env, body):
    env.prom.query_range = lambda *a: FakeResponse(200 if body else 502, body, text="<html>" if body is None else None)
    http = FakeHTTP({**healthy_stack(), **env.prom.routes()})
    bad = backfill.Backfiller(PromAPI(PROM, http), env.db, 1, lambda: NOW)
    assert bad.attempt() is False and bad.status["state"] == "waiting" and bad.status["detail"]
    assert rows(env) == []


def test_the_rules_unanswered_leave_the_intervals_without_reason_text(env):
    env.prom.rules_answer = lambda *a: FakeResponse(503, {"status": "error", "error": "down"})
    http = FakeHTTP({**healthy_stack(), **env.prom.routes()})
    env.prom.firing = [(DOWN, every(NOW - 900, NOW - 600))]
    assert backfill.Backfiller(PromAPI(PROM, http), env.db, 1, lambda: NOW).attempt()
    (row,) = rows(env)
    assert row["summary"] == "" and row["source"] == "prometheus"


def test_an_unrenderable_annotation_is_kept_as_the_template_and_named(env):
    env.prom.firing = [({"alertname": "HighErrorRatio", "severity": "warning"}, every(NOW - 900, NOW - 600))]
    assert env.backfill.attempt()
    (row,) = rows(env)
    assert row["summary"] == "{{ $value | humanizePercentage }} fail" and row["unrendered"] == ["summary"]


def test_a_history_from_before_sources_gains_the_column(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(store.SCHEMA[2])
        conn.execute("INSERT INTO alerts VALUES ('f', 1, 'A', 'firing', '', '', ?, '{}', NULL, '', 1, 1, 1)",
                     (json.dumps({"alertname": "A"}),))
    conn.close()
    with store.connect(path) as conn:
        (row,) = store.search(conn, store.Query(), NOW)
    assert row["source"] == "alertmanager"


def test_a_bad_source_filter_is_a_400_naming_it(env):
    answer = env.test_client().get("/api/alerts/history?source=grafana")
    assert answer.status_code == 400 and answer.get_json()["param"] == "source"


def test_requests_opening_a_history_from_before_sources_at_once_add_the_column_once(tmp_path):
    from tests.support.helpers import all_at_once

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(store.SCHEMA[2])
    conn.close()

    def open_it():
        with store.connect(path) as conn:
            return [r[1] for r in conn.execute("PRAGMA table_info(alerts)")].count("source")

    columns, errors = all_at_once(open_it)
    assert errors == [] and columns == [1, 1, 1, 1]
