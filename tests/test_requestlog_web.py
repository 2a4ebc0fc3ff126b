"""GET /api/requests: bad input is a 400 naming the parameter; a missing or broken log is a status, never a 500."""
from __future__ import annotations

import time

import pytest

from llmops.dashboard import create_app
from llmops.requestlog import store
from tests.support.fakes.dashboard import FakeHTTP, healthy_stack, make_settings


def client(tmp_path):
    settings = make_settings(REQUEST_LOG_PATH=str(tmp_path / "requests.db"), LLMOPS_STATE_DIR=str(tmp_path / "state"))
    app = create_app({"SETTINGS": settings, "HTTP_SESSION": FakeHTTP(healthy_stack()), "START_MONITOR": False,
                      "SERVICE_PIDS": lambda: {}})
    return app.test_client()


@pytest.mark.parametrize("query, param", [
    ("outcome=nope", "outcome"), ("limit=0", "limit"), ("limit=ten", "limit"), ("since=tuesday", "since"),
    ("until=12:00", "until"), ("cursor=%%%", "cursor"), ("tools=yes", "tools"),
    ("priority=high", "priority"), ("priority=-1", "priority"), ("priority=256", "priority"),
    ("priority=1.5", "priority"), ("priority=99999999999999999999", "priority"), ("priority=%201", "priority"),
])
def test_bad_parameter_is_a_400_naming_it_and_the_app_stays_up(tmp_path, query, param):
    app = client(tmp_path)
    answer = app.get(f"/api/requests?{query}")
    assert answer.status_code == 400
    assert answer.get_json()["param"] == param and param in answer.get_json()["error"]
    assert app.get("/api/requests").status_code == 200


def test_no_log_file_yet_is_an_empty_list_and_the_dashboard_creates_nothing(tmp_path):
    answer = client(tmp_path).get("/api/requests").get_json()
    assert answer["requests"] == [] and answer["next_cursor"] is None and answer["log"]["degraded"] is None
    assert not (tmp_path / "requests.db").exists()


def test_unreadable_log_says_degraded_instead_of_failing(tmp_path):
    (tmp_path / "requests.db").write_bytes(b"garbage" * 1000)
    for url in ("/api/requests", "/api/requests/facets"):
        answer = client(tmp_path).get(url)
        assert answer.status_code == 200
        assert "cannot read requests.db" in answer.get_json()["log"]["degraded"]


def test_rows_come_back_newest_first_with_facets(tmp_path):
    conn = store.connect(tmp_path / "requests.db")
    now = time.time()
    store.write_batch(conn, [{"call_id": f"c{i}", "ts": now - 10 + i, "outcome": "ok", "status": 200, "kind": "chat",
                              "model": "m", "user_agent": "ua", "attempts": 1, "rank": 3} for i in range(3)])
    app = client(tmp_path)
    answer = app.get("/api/requests?limit=2").get_json()
    assert [r["call_id"] for r in answer["requests"]] == ["c2", "c1"] and answer["next_cursor"]
    rest = app.get(f"/api/requests?limit=2&cursor={answer['next_cursor']}").get_json()
    assert [r["call_id"] for r in rest["requests"]] == ["c0"]
    assert app.get("/api/requests/facets").get_json()["models"] == ["m"]


def write(tmp_path, rows: list[dict]) -> None:
    """Rows in the log file, each over an ok chat request."""
    conn = store.connect(tmp_path / "requests.db")
    base = {"outcome": "ok", "status": 200, "kind": "chat", "model": "m", "attempts": 1, "rank": 3}
    store.write_batch(conn, [{**base, **r} for r in rows])
    conn.close()


def test_rows_say_how_many_tools_were_offered_and_calls_made_and_filter_on_tools(tmp_path):
    now = time.time()
    write(tmp_path, [
        {"call_id": "plain", "ts": now - 3},
        {"call_id": "called", "ts": now - 2, "tools": 3, "tool_calls": 2},
        {"call_id": "text", "ts": now - 1, "tools": 1, "tool_calls": 0},
        {"call_id": "refused", "ts": now, "tools": 2, "outcome": "client_error", "status": 400},
    ])
    app = client(tmp_path)
    rows = {r["call_id"]: r for r in app.get("/api/requests").get_json()["requests"]}
    assert [(rows[c]["tools"], rows[c]["tool_calls"]) for c in ("plain", "called", "text", "refused")] == [
        (None, None), (3, 2), (1, 0), (2, None)]
    with_tools = app.get("/api/requests?tools=1").get_json()["requests"]
    assert [r["call_id"] for r in with_tools] == ["refused", "text", "called"]
    assert [r["call_id"] for r in app.get("/api/requests?tools=0").get_json()["requests"]] == ["plain"]


def test_rows_filter_on_the_queue_priority(tmp_path):
    now = time.time()
    write(tmp_path, [
        {"call_id": "unqueued", "ts": now - 4},
        {"call_id": "urgent", "ts": now - 3, "priority": 0, "queue_wait_ms": 1.5},
        {"call_id": "bulk", "ts": now - 2, "priority": 9, "queue_wait_ms": 820.0},
        {"call_id": "bulk-refused", "ts": now - 1, "priority": 9, "queue_wait_ms": 60000.0,
         "outcome": "rate_limited", "status": 429},
    ])
    app = client(tmp_path)
    assert [r["call_id"] for r in app.get("/api/requests?priority=9").get_json()["requests"]] == ["bulk-refused", "bulk"]
    urgent = app.get("/api/requests?priority=0").get_json()["requests"]
    assert [(r["call_id"], r["priority"], r["queue_wait_ms"]) for r in urgent] == [("urgent", 0, 1.5)]
    assert app.get("/api/requests?priority=255").get_json()["requests"] == []
    assert len(app.get("/api/requests?priority=").get_json()["requests"]) == 4  # empty: no filter
    assert app.get("/api/requests/facets").get_json()["priorities"] == [0, 9]
