"""The dashboard's alert history: every notification Alertmanager sent it, and each alert's life, in SQLite.

One row per notification (`notifications`) and one per alert occurrence (`alerts`, keyed by Alertmanager's
fingerprint and the alert's start): a resolved notice closes the occurrence that its firing notices opened.
The dashboard is the only writer (data/alerts.db is its own file: the request log's store belongs to the
proxy's writer); rows older than ALERT_HISTORY_DAYS after their last notification are pruned on each write.

Each occurrence has a source: "alertmanager" (a notification) or "prometheus" (recovered at the dashboard's start
from Prometheus's ALERTS series, llmops/alerts/backfill.py: an alert that fired while the dashboard was down). A
notification replaces a recovered occurrence of the same labels that it overlaps, so the two never double up.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import BadQuery
from ..requestlog.store import parse_span, switch_to_wal, where, write_transaction
from .payload import STATES, Notification

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS notifications (
        id INTEGER PRIMARY KEY, received_at REAL NOT NULL, status TEXT NOT NULL, receiver TEXT NOT NULL,
        group_key TEXT NOT NULL, alerts INTEGER NOT NULL, truncated INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS notifications_received ON notifications (received_at)",
    """CREATE TABLE IF NOT EXISTS alerts (
        fingerprint TEXT NOT NULL, starts_at REAL NOT NULL, alertname TEXT NOT NULL, status TEXT NOT NULL,
        severity TEXT NOT NULL, instance TEXT NOT NULL, labels TEXT NOT NULL, annotations TEXT NOT NULL,
        ends_at REAL, generator_url TEXT NOT NULL, first_notified REAL NOT NULL, last_notified REAL NOT NULL,
        notifications INTEGER NOT NULL, PRIMARY KEY (fingerprint, starts_at))""",
    "CREATE INDEX IF NOT EXISTS alerts_starts ON alerts (starts_at)",
    "CREATE INDEX IF NOT EXISTS alerts_last ON alerts (last_notified)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL)",
)
SOURCES = ("alertmanager", "prometheus")
# A notification's alert and a recovered interval of the same labels are one occurrence when they overlap. They
# always do: Alertmanager's startsAt is the evaluation that fired it and its endsAt the one that found it inactive,
# and Prometheus's ALERTS samples lie between. Two occurrences are at least one evaluation apart, so the slack
# (for times rounded to milliseconds) is far less than an evaluation interval.
OVERLAP_S = 0.5
# A resolved occurrence stays resolved: a late firing notice of the same start cannot reopen it.
_UPSERT = """
INSERT INTO alerts (fingerprint, starts_at, alertname, status, severity, instance, labels, annotations, ends_at,
                    generator_url, first_notified, last_notified, notifications)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
    status = CASE WHEN alerts.status = 'resolved' THEN 'resolved' ELSE excluded.status END,
    ends_at = CASE WHEN alerts.status = 'resolved' THEN alerts.ends_at ELSE excluded.ends_at END,
    labels = excluded.labels, annotations = excluded.annotations, severity = excluded.severity,
    last_notified = excluded.last_notified, notifications = alerts.notifications + 1
"""
# The occurrences of one label set that overlap [starts, ends] (parameters: _overlap(labels, starts, ends, now)).
_OVERLAPS = "labels = ? AND starts_at <= ? AND (ends_at IS NULL OR ends_at >= ?)"
_REPLACE_RECOVERED = f"DELETE FROM alerts WHERE source = 'prometheus' AND {_OVERLAPS}"
DEFAULT_LIMIT, MAX_LIMIT = 100, 500


@contextmanager
def connect(path: Path, busy_timeout_ms: int = 2000):
    """A connection for one request (created with the schema, mode 0600), closed on every path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with closing(sqlite3.connect(str(path), timeout=busy_timeout_ms / 1000, isolation_level=None)) as conn:
        if new:
            os.chmod(path, 0o600)
        switch_to_wal(conn, busy_timeout_ms / 1000)
        for statement in SCHEMA:
            conn.execute(statement)
        if "source" not in {r[1] for r in conn.execute("PRAGMA table_info(alerts)")}:  # a file from before sources
            with write_transaction(conn):  # checked again under the write lock: two requests add it once
                if "source" not in {r[1] for r in conn.execute("PRAGMA table_info(alerts)")}:
                    conn.execute("ALTER TABLE alerts ADD COLUMN source TEXT NOT NULL DEFAULT 'alertmanager'")
        conn.row_factory = sqlite3.Row
        yield conn


def record(conn: sqlite3.Connection, note: Notification, now: float, keep_days: int) -> None:
    """Store one notification and update its alerts, then prune what is older than keep_days; one transaction."""
    with write_transaction(conn):
        conn.execute("INSERT INTO notifications (received_at, status, receiver, group_key, alerts, truncated) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     (now, note.status, note.receiver, note.group_key, len(note.alerts), note.truncated))
        conn.executemany(_REPLACE_RECOVERED, [
            _overlap(json.dumps(a.labels, sort_keys=True), a.starts_at, a.ends_at, now) for a in note.alerts])
        conn.executemany(_UPSERT, [
            (a.fingerprint, a.starts_at, a.labels["alertname"], a.status, a.labels.get("severity", ""),
             a.labels.get("instance") or a.labels.get("backend", ""), json.dumps(a.labels, sort_keys=True),
             json.dumps(a.annotations, sort_keys=True), a.ends_at, a.generator_url, now, now)
            for a in note.alerts])
        cutoff = now - keep_days * 86400
        conn.execute("DELETE FROM alerts WHERE last_notified < ?", (cutoff,))
        conn.execute("DELETE FROM notifications WHERE received_at < ?", (cutoff,))


@dataclass
class Query:
    """Filters of GET /api/alerts/history."""

    name: str | None = None
    state: str | None = None
    source: str | None = None
    since: float | None = None  # the alert was active at or after this time
    until: float | None = None  # ... and had started by this time
    limit: int = DEFAULT_LIMIT


def parse_query(args: dict[str, str], now: float | None = None) -> Query:
    """URL parameters -> Query; a bad value raises BadQuery naming the parameter."""
    now = time.time() if now is None else now
    query = Query(name=args.get("name") or None)
    if args.get("state"):
        if args["state"] not in STATES:
            raise BadQuery("state", f"{args['state']!r} is not one of {', '.join(STATES)}")
        query.state = args["state"]
    if args.get("source"):
        if args["source"] not in SOURCES:
            raise BadQuery("source", f"{args['source']!r} is not one of {', '.join(SOURCES)}")
        query.source = args["source"]
    parse_span(query, args, now, MAX_LIMIT)
    return query


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _row(row: sqlite3.Row, now: float) -> dict:
    annotations = json.loads(row["annotations"])
    ends = row["ends_at"]
    return {
        "alertname": row["alertname"], "state": row["status"], "severity": row["severity"],
        "instance": row["instance"], "fingerprint": row["fingerprint"],
        "labels": json.loads(row["labels"]), "annotations": annotations,
        "summary": annotations.get("summary", ""), "description": annotations.get("description", ""),
        "starts_at": _iso(row["starts_at"]), "ends_at": _iso(ends),
        "duration_s": round((ends if ends is not None else now) - row["starts_at"], 3),
        "resolved": row["status"] == "resolved", "notifications": row["notifications"],
        "first_notified": _iso(row["first_notified"]), "last_notified": _iso(row["last_notified"]),
        "source": row["source"],
        # A recovered occurrence's annotations are the rule's templates, rendered only where they are simple.
        "unrendered": sorted(k for k, v in annotations.items() if "{{" in v) if row["source"] == "prometheus" else [],
    }


def search(conn: sqlite3.Connection, query: Query, now: float) -> list[dict]:
    """Alert occurrences, newest start first."""
    clause, params = where((bool(query.name), "alertname = ?", (query.name,)),
                           (bool(query.state), "status = ?", (query.state,)),
                           (bool(query.source), "source = ?", (query.source,)),
                           (query.since is not None, "(ends_at IS NULL OR ends_at >= ?)", (query.since,)),
                           (query.until is not None, "starts_at <= ?", (query.until,)))
    rows = conn.execute(f"SELECT * FROM alerts{clause} ORDER BY starts_at DESC, fingerprint LIMIT ?",
                        (*params, query.limit)).fetchall()
    return [_row(r, now) for r in rows]


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """How many notifications and alert occurrences the history holds."""
    return {"notifications": conn.execute("SELECT count(*) FROM notifications").fetchone()[0],
            "alerts": conn.execute("SELECT count(*) FROM alerts").fetchone()[0]}


@dataclass(frozen=True)
class Recovered:
    """One firing interval of an alert found in Prometheus's ALERTS series (ends_at None: firing at the query's end)."""

    labels: dict[str, str]
    starts_at: float
    ends_at: float | None
    annotations: dict[str, str]
    fingerprint: str


def get_meta(conn: sqlite3.Connection, key: str) -> float | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def set_meta(conn: sqlite3.Connection, key: str, value: float) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 (key, value))


def newest_notification(conn: sqlite3.Connection) -> float | None:
    return conn.execute("SELECT max(received_at) FROM notifications").fetchone()[0]


def _overlap(labels: str, starts: float, ends: float | None, now: float) -> tuple:
    """_OVERLAPS's parameters: an occurrence still firing (ends None) reaches to now; OVERLAP_S of slack each side."""
    return labels, (ends if ends is not None else now) + OVERLAP_S, starts - OVERLAP_S


def _overlapping(conn: sqlite3.Connection, labels: str, starts: float, ends: float | None, now: float) -> list:
    return conn.execute(f"SELECT rowid, source, starts_at, ends_at FROM alerts WHERE {_OVERLAPS}",
                        _overlap(labels, starts, ends, now)).fetchall()


def merge_recovered(conn: sqlite3.Connection, found: list[Recovered], now: float, keep_days: int,
                    up_until: float) -> dict[str, int]:
    """Add the intervals the history does not cover; one transaction. An interval that overlaps a notified
    occurrence of the same labels is that occurrence (left as Alertmanager told it); one that overlaps a recovered
    occurrence updates it (a recovered alert that was still firing last time may have resolved since). The
    dashboard is recorded as up until `up_until`. Returns how many were added, updated and already covered."""
    done = {"added": 0, "updated": 0, "covered": 0}
    with write_transaction(conn):
        for item in found:
            labels = json.dumps(item.labels, sort_keys=True)
            rows = _overlapping(conn, labels, item.starts_at, item.ends_at, now)
            if any(r["source"] != "prometheus" for r in rows):
                done["covered"] += 1
            elif rows:
                # A recovered alert that was firing and has ended since is closed; a closed one is kept as it is.
                first = min(rows, key=lambda r: r["starts_at"])
                changed = (first["ends_at"] is None and item.ends_at is not None) or len(rows) > 1
                if changed:
                    conn.executemany("DELETE FROM alerts WHERE rowid = ?",
                                     [(r["rowid"],) for r in rows if r is not first])
                    conn.execute("UPDATE alerts SET ends_at = ?, status = ?, last_notified = ? WHERE rowid = ?",
                                 (item.ends_at, "firing" if item.ends_at is None else "resolved", now, first["rowid"]))
                done["updated" if changed else "covered"] += 1
            else:
                conn.execute(
                    "INSERT INTO alerts (fingerprint, starts_at, alertname, status, severity, instance, labels, "
                    "annotations, ends_at, generator_url, first_notified, last_notified, notifications, source) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, 0, 'prometheus')",
                    (item.fingerprint, item.starts_at, item.labels["alertname"],
                     "firing" if item.ends_at is None else "resolved", item.labels.get("severity", ""),
                     item.labels.get("instance") or item.labels.get("backend", ""), labels,
                     json.dumps(item.annotations, sort_keys=True), item.ends_at, now, now))
                done["added"] += 1
        set_meta(conn, "up_until", up_until)
        conn.execute("DELETE FROM alerts WHERE last_notified < ?", (now - keep_days * 86400,))
    return done
