"""The request log's store and writer without a proxy: merging, retention, paging, bad queries, failure counted."""
from __future__ import annotations

import sqlite3
import time

import pytest

from llmops.requestlog import outcomes, store, writer
from tests.support.helpers import wait_for


def row(call_id: str, ts: float, **fields) -> dict:
    return {"call_id": call_id, "ts": ts, "outcome": "ok", "status": 200, "attempts": 1, "rank": 3, **fields}


@pytest.mark.parametrize("status, error, expected", [
    (200, None, "ok"), (400, "BadRequestError", "client_error"), (401, None, "client_error"),
    (429, "RateLimitError", "rate_limited"), (500, "InternalServerError", "server_error"),
    (503, None, "server_error"), (408, "Timeout", "timeout"), (500, "Timeout", "timeout"), (499, None, "client_error"),
])
def test_classify_uses_the_dashboards_classes(status, error, expected):
    assert outcomes.classify(status, error) == expected
    assert expected in outcomes.CLASSES


def test_events_of_one_call_merge_into_one_row_the_final_answer_winning(tmp_path):
    conn = store.connect(tmp_path / "r.db")
    attempt = row("a", 10.0, outcome="server_error", status=500, rank=1, deployment="http://b:1", latency_ms=12.0,
                  error_type="InternalServerError", error_message="attempt failed")
    hook = row("a", 10.5, outcome="server_error", status=503, rank=2, attempts=0, deployment=None, latency_ms=None,
               error_type="InternalServerError", error_message="what the client got")
    store.write_batch(conn, [attempt])
    store.write_batch(conn, [hook])
    rows = conn.execute("SELECT ts, status, deployment, latency_ms, error_message, attempts FROM requests").fetchall()
    assert rows == [(10.0, 503, "http://b:1", 12.0, "what the client got", 1)]


def test_a_success_after_a_failed_attempt_keeps_no_error_whatever_the_order(tmp_path):
    conn = store.connect(tmp_path / "r.db")
    failed = row("a", 10.0, outcome="server_error", status=500, rank=1, error_type="InternalServerError",
                 error_message="attempt 1 failed")
    success = row("a", 10.0, attempts=2, deployment="http://b:1")
    store.write_batch(conn, [failed])
    store.write_batch(conn, [success])
    store.write_batch(conn, [row("b", 10.0, attempts=2), {**failed, "call_id": "b"}])
    rows = conn.execute("SELECT outcome, status, error_type, error_message, attempts FROM requests").fetchall()
    assert rows == [("ok", 200, None, None, 2)] * 2


def test_the_file_is_readable_by_its_owner_only(tmp_path):
    store.connect(tmp_path / "r.db").close()
    assert (tmp_path / "r.db").stat().st_mode & 0o777 == 0o600


def test_retention_by_age_and_by_row_cap(tmp_path):
    conn = store.connect(tmp_path / "r.db")
    now = 1_000_000.0
    store.write_batch(conn, [row(f"old{i}", now - 8 * 86400) for i in range(3)]
                      + [row(f"new{i}", now - i) for i in range(10)])
    assert store.prune(conn, days=7, max_rows=6, now=now) == 3 + 4
    left = {r[0] for r in conn.execute("SELECT call_id FROM requests")}
    assert left == {f"new{i}" for i in range(4, 10)}, "the newest rows by insertion stay"


def test_pages_newest_first_with_a_cursor_and_filters(tmp_path):
    conn = store.connect(tmp_path / "r.db")
    store.write_batch(conn, [row(f"c{i}", 100.0 + i, model="m1" if i % 2 else "m2") for i in range(7)]
                      + [row("bad", 50.0, outcome="rate_limited", status=429, error_message="Slots in use")])
    ro = store.connect_readonly(tmp_path / "r.db")
    first = store.search(ro, store.parse_query({"limit": "3"}))
    assert [r["call_id"] for r in first["requests"]] == ["c6", "c5", "c4"]
    second = store.search(ro, store.parse_query({"limit": "3", "cursor": first["next_cursor"]}))
    third = store.search(ro, store.parse_query({"limit": "3", "cursor": second["next_cursor"]}))
    assert [r["call_id"] for r in second["requests"] + third["requests"]] == ["c3", "c2", "c1", "c0", "bad"]
    assert third["next_cursor"] is None
    assert {r["model"] for r in store.search(ro, store.parse_query({"model": "m1"}))["requests"]} == {"m1"}
    failures = store.search(ro, store.parse_query({"outcome": "failures", "q": "slots"}))["requests"]
    assert [r["call_id"] for r in failures] == ["bad"]
    window = store.search(ro, store.parse_query({"since": "102", "until": "104"}))["requests"]
    assert [r["call_id"] for r in window] == ["c3", "c2"]
    with pytest.raises(sqlite3.OperationalError):
        ro.execute("DELETE FROM requests")


@pytest.mark.parametrize("args, param", [
    ({"outcome": "weird"}, "outcome"), ({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"),
    ({"limit": "100000"}, "limit"), ({"since": "yesterday"}, "since"), ({"cursor": "!!"}, "cursor"),
])
def test_bad_query_names_the_parameter(args, param):
    with pytest.raises(store.BadQuery) as caught:
        store.parse_query(args)
    assert caught.value.param == param


def test_writer_batches_rows_and_reports_in_its_status_file(tmp_path):
    w = writer.Writer(tmp_path / "r.db", status_dir=tmp_path / "status").start()
    for i in range(25):
        w.put(row(f"w{i}", time.time()))
    wait_for(lambda: writer.read_status(tmp_path / "status")["written"] == 25, 10, "25 rows written")
    w.close()
    assert store.connect(tmp_path / "r.db").execute("SELECT count(*) FROM requests").fetchone()[0] == 25
    assert writer.read_status(tmp_path / "status")["degraded"] is None


def test_status_file_refreshes_the_count_on_its_period_and_a_drop_at_once(tmp_path):
    now = [1000.0]
    w = writer.Writer(tmp_path / "r.db", status_dir=tmp_path / "status", clock=lambda: now[0])  # not started

    def status():
        return writer.read_status(tmp_path / "status", now=now[0])

    w._write([row("s1", now[0])])
    w._write_status()
    assert status()["written"] == 1
    w._write([row("s2", now[0])])
    now[0] += writer.STATUS_SECONDS / 2
    w._write_status()
    assert status()["written"] == 1, "rows alone do not rewrite the file within its period"
    now[0] += writer.STATUS_SECONDS / 2
    w._write_status()
    assert status()["written"] == 2
    w._drop(1, "disk full")
    w._write_status()
    assert status()["dropped"] == 1 and status()["degraded"] == "disk full", "a drop is reported at once"


def test_a_full_batch_is_written_at_once_and_close_writes_the_rest(tmp_path):
    w = writer.Writer(tmp_path / "r.db", flush_seconds=600).start()  # the clock alone would wait 10 minutes
    for i in range(writer.BATCH_ROWS):
        w.put(row(f"b{i}", time.time()))
    wait_for(lambda: w.written == writer.BATCH_ROWS, 10, "a full batch written before the flush interval")
    for i in range(3):
        w.put(row(f"tail{i}", time.time()))
    w.close(timeout=10)
    assert w.written == writer.BATCH_ROWS + 3 and not w._thread.is_alive()
    count = store.connect(tmp_path / "r.db").execute("SELECT count(*) FROM requests").fetchone()[0]
    assert count == writer.BATCH_ROWS + 3


def test_unwritable_place_drops_rows_counts_them_and_says_why(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("the database's folder is a file: no user, root included, can create it")
    w = writer.Writer(blocker / "r.db", status_dir=tmp_path / "status").start()
    w.put(row("x", time.time()))
    status = wait_for(lambda: (s := writer.read_status(tmp_path / "status"))["dropped"] and s, 10, "a drop")
    assert status["dropped"] == 1 and "cannot write" in status["degraded"]
    w.close()


def test_a_file_that_is_not_a_database_drops_rows_and_never_raises(tmp_path):
    bad = tmp_path / "r.db"
    bad.write_bytes(b"not a database" * 100)
    w = writer.Writer(bad, status_dir=tmp_path / "status").start()
    w.put(row("x", 1.0))
    status = wait_for(lambda: (s := writer.read_status(tmp_path / "status"))["dropped"] and s, 10, "a drop")
    assert "not a database" in status["degraded"]
    w.close()


def test_a_full_queue_drops_rows_instead_of_growing(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "QUEUE_ROWS", 5)
    w = writer.Writer(tmp_path / "r.db")  # not started: nothing drains the queue
    for i in range(8):
        w.put(row(f"q{i}", 1.0))
    assert (w.queued(), w.dropped) == (5, 3) and "queue full" in w.degraded


def test_an_older_file_gains_the_new_columns_in_place_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    new = ("tools", "tool_calls", "priority", "queue_wait_ms")
    old = [(n, t) for n, t in store.COLUMNS if n not in new]
    with sqlite3.connect(path) as conn:  # a file as the first release wrote it
        conn.execute(f"CREATE TABLE requests (id INTEGER PRIMARY KEY, {', '.join(f'{n} {t}' for n, t in old)})")
        conn.execute("INSERT INTO requests (call_id, ts, outcome) VALUES ('before', 1.0, 'ok')")
    conn = store.connect(path)
    names = [r[1] for r in conn.execute("PRAGMA table_info(requests)")]
    assert names[-4:] == list(new)
    store.write_batch(conn, [row("after", 2.0, tools=3, tool_calls=1, priority=0, queue_wait_ms=12.5)])
    rows = conn.execute("SELECT call_id, tools, tool_calls, priority, queue_wait_ms FROM requests ORDER BY ts").fetchall()
    assert rows == [("before", None, None, None, None), ("after", 3, 1, 0, 12.5)]
    assert store.migrate(conn) == []  # a file that has them all: nothing to do
    conn.close()


def test_workers_opening_an_older_file_at_once_add_each_column_once(tmp_path):
    from tests.support.helpers import all_at_once

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE requests (id INTEGER PRIMARY KEY, call_id TEXT NOT NULL UNIQUE, ts REAL NOT NULL, "
                     "outcome TEXT NOT NULL)")
    conns, errors = all_at_once(lambda: store.connect(path))
    assert errors == [] and len(conns) == 4
    names = [r[1] for r in conns[0].execute("PRAGMA table_info(requests)")]
    assert sorted(names) == sorted(["id", *store.NAMES]) and len(names) == len(set(names))
    for conn in conns:
        conn.close()
