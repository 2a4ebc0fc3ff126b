"""The request log's SQLite file: schema, batched upserts, retention, and read-only queries with cursor paging."""
from __future__ import annotations

import base64
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import BadQuery
from ..proxy.queue import PRIORITY_MAX, PRIORITY_MIN
from .outcomes import CLASSES, OK

# (name, SQL type). `rank` says which event a row's outcome came from: a later, more final event wins.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("call_id", "TEXT NOT NULL UNIQUE"),
    ("ts", "REAL NOT NULL"),            # request start, unix seconds
    ("kind", "TEXT"),                   # chat, completion, embeddings, ...
    ("model", "TEXT"),                  # the model group the client asked for
    ("served_by", "TEXT"),              # the model group that answered, when a fallback did
    ("deployment", "TEXT"),             # the api_base of the deployment that served the last attempt
    ("outcome", "TEXT NOT NULL"),
    ("status", "INTEGER"),
    ("latency_ms", "REAL"),
    ("ttft_ms", "REAL"),
    ("stream", "INTEGER"),
    ("finish_reason", "TEXT"),          # of a success; a stream the client cut short has none
    ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"),
    ("attempts", "INTEGER NOT NULL DEFAULT 0"),  # calls to a deployment (retries = attempts - 1); 0: none made
    ("user_agent", "TEXT"),
    ("key_alias", "TEXT"),
    ("key_hash", "TEXT"),               # LiteLLM's sha256 of the key; the key itself is never stored
    ("error_type", "TEXT"),
    ("error_message", "TEXT"),
    ("prompt", "TEXT"),                 # only with REQUEST_LOG_CONTENT=1, truncated
    ("answer", "TEXT"),
    ("worker_pid", "INTEGER"),
    ("rank", "INTEGER NOT NULL DEFAULT 0"),
    # Added after the first files were written: connect() adds them to an older file (migrate).
    ("tools", "INTEGER"),               # how many tools the request offered; NULL: none
    ("tool_calls", "INTEGER"),          # how many tool calls the answer made (of a success with tools)
    ("priority", "INTEGER"),            # the proxy queue's priority of the request (0-255, lower first)
    ("queue_wait_ms", "REAL"),          # how long it waited in the proxy's queue (admitted, or until refused)
)
NAMES = tuple(name for name, _ in COLUMNS)
# The outcome comes whole from the most final event (a success after a failed attempt has no error);
# the other fields are filled from whichever event knows them, the more final one first.
_OUTCOME = ("outcome", "status", "error_type", "error_message", "finish_reason")
_MERGED = [n for n in NAMES if n not in ("call_id", "ts", "attempts", "rank", *_OUTCOME)]
_UPSERT = (
    f"INSERT INTO requests ({', '.join(NAMES)}) VALUES ({', '.join('?' for _ in NAMES)}) "
    "ON CONFLICT(call_id) DO UPDATE SET ts = min(requests.ts, excluded.ts), "
    "attempts = max(requests.attempts, excluded.attempts), rank = max(requests.rank, excluded.rank), "
    + ", ".join(f"{n} = CASE WHEN excluded.rank >= requests.rank THEN excluded.{n} ELSE requests.{n} END"
                for n in _OUTCOME)
    + ", "
    + ", ".join(
        f"{n} = CASE WHEN excluded.rank >= requests.rank THEN coalesce(excluded.{n}, requests.{n}) "
        f"ELSE coalesce(requests.{n}, excluded.{n}) END"
        for n in _MERGED
    )
)
SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY, {', '.join(f'{n} {t}' for n, t in COLUMNS)})",
    "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)",
    "CREATE INDEX IF NOT EXISTS requests_outcome_ts ON requests (outcome, ts)",
)
MAX_LIMIT = 500
FAILURES = "failures"  # outcome filter: every class but ok


def connect(path: Path, busy_timeout_ms: int = 2000) -> sqlite3.Connection:
    """Open (creating) the log for writing: WAL, so readers never block the writer, and a busy timeout for other workers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    conn = sqlite3.connect(str(path), timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False)
    if new:
        os.chmod(path, 0o600)  # owner only, whatever the umask; SQLite gives the -wal and -shm files the same mode
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    switch_to_wal(conn, busy_timeout_ms / 1000)
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a power cut may lose the last commits, never corrupts
    for statement in SCHEMA:
        conn.execute(statement)
    migrate(conn)
    return conn


def switch_to_wal(conn: sqlite3.Connection, timeout_s: float) -> None:
    """`PRAGMA journal_mode = WAL`, retried until `timeout_s`: while other workers open the same rollback-mode
    file, SQLite can answer the switch "database is locked" at once, without waiting on the busy timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (the write lock at once, waiting on the busy timeout), COMMIT at the end of the block,
    ROLLBACK on any exception; for a connection in autocommit mode (isolation_level=None)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Add to an existing file each column of COLUMNS it lacks (ALTER TABLE ADD COLUMN), in place, rows kept.

    The one migration mechanism of the log: a new column is a new row at the end of COLUMNS, with a type
    SQLite can add (nullable, or NOT NULL with a DEFAULT). Done in one write transaction, so several
    proxy workers opening the file at once add each column once. Returns the columns added.
    """
    with write_transaction(conn):
        present = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
        added = [name for name, _ in COLUMNS if name not in present]
        for name, sql_type in COLUMNS:
            if name in added:
                conn.execute(f"ALTER TABLE requests ADD COLUMN {name} {sql_type}")
    return added


def connect_readonly(path: Path) -> sqlite3.Connection:
    """Open the log read-only (the dashboard and the export never write)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def write_batch(conn: sqlite3.Connection, rows: list[dict]) -> None:
    """Upsert rows in one transaction: several events of one call id merge into one row."""
    values = [tuple(row.get(n) for n in NAMES) for row in rows]
    with write_transaction(conn):
        conn.executemany(_UPSERT, values)


def prune(conn: sqlite3.Connection, days: float, max_rows: int, now: float | None = None) -> int:
    """Delete rows older than `days` and the oldest past `max_rows`; return how many went."""
    now = time.time() if now is None else now
    removed = 0
    if days > 0:
        removed += conn.execute("DELETE FROM requests WHERE ts < ?", (now - days * 86400,)).rowcount
    if max_rows > 0:
        cut = conn.execute("SELECT id FROM requests ORDER BY id DESC LIMIT 1 OFFSET ?", (max_rows,)).fetchone()
        if cut:
            removed += conn.execute("DELETE FROM requests WHERE id <= ?", (cut[0],)).rowcount
    return removed


# -- queries --------------------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(param: str, value: str, now: float) -> float:
    """Unix seconds, ISO 8601 (`2026-12-01T09:00:00Z`), or an age like `15m`, `2h`, `7d`."""
    text = value.strip()
    if match := _RELATIVE.match(text):
        return now - float(match.group(1)) * _UNIT[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(param, f"{value!r} is not unix seconds, ISO 8601 or an age like 15m") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_span(query: object, args: dict[str, str], now: float, max_limit: int) -> None:
    """Set query.since, .until (parse_time) and .limit (1..max_limit) from URL parameters; BadQuery names a bad one.

    Shared by the request log's and the alert history's queries."""
    for name in ("since", "until"):
        if args.get(name):
            setattr(query, name, parse_time(name, args[name], now))
    if args.get("limit"):
        try:
            query.limit = int(args["limit"])
        except ValueError:
            raise BadQuery("limit", f"{args['limit']!r} is not a whole number") from None
        if not 1 <= query.limit <= max_limit:
            raise BadQuery("limit", f"{query.limit} is outside 1-{max_limit}")


@dataclass
class Query:
    """Filters of one page of the log."""

    model: str | None = None
    outcome: str | None = None   # a class, or "failures"
    kind: str | None = None
    user_agent: str | None = None  # substring
    since: float | None = None
    until: float | None = None
    q: str | None = None         # substring of the error type or message
    tools: bool | None = None    # True: only requests that offered tools; False: only those without
    priority: int | None = None  # only requests the proxy's queue held at this priority
    limit: int = 50
    cursor: tuple[float, int] | None = None


def encode_cursor(ts: float, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{ts!r}:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[float, int]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        ts, row_id = raw.split(":")
        return float(ts), int(row_id)
    except (ValueError, UnicodeDecodeError):
        raise BadQuery("cursor", f"{value[:40]!r} is not a cursor from an earlier answer") from None


def parse_query(args: dict[str, str], now: float | None = None) -> Query:
    """Build a Query from URL parameters; a bad value raises BadQuery naming the parameter."""
    now = time.time() if now is None else now
    query = Query()
    for name in ("model", "kind", "user_agent", "q"):
        if args.get(name):
            setattr(query, name, args[name])
    outcome = args.get("outcome")
    if outcome:
        if outcome not in (*CLASSES, FAILURES):
            raise BadQuery("outcome", f"{outcome!r} is not one of {', '.join((*CLASSES, FAILURES))}")
        query.outcome = outcome
    if args.get("tools"):
        if args["tools"] not in ("1", "0"):
            raise BadQuery("tools", f"{args['tools'][:40]!r} is not 1 (with tools) or 0 (without)")
        query.tools = args["tools"] == "1"
    if args.get("priority"):
        value = args["priority"]
        if not re.fullmatch(r"\d{1,3}", value) or int(value) > PRIORITY_MAX:
            raise BadQuery("priority", f"{value[:40]!r} is not a priority (an integer {PRIORITY_MIN}-{PRIORITY_MAX})")
        query.priority = int(value)
    parse_span(query, args, now, MAX_LIMIT)
    if args.get("cursor"):
        query.cursor = decode_cursor(args["cursor"])
    return query


def where(*conditions: tuple[bool, str, tuple]) -> tuple[str, list]:
    """" WHERE a AND b" and its parameters from (applies, clause, parameters) triples; "" when none applies."""
    applied = [(clause, params) for applies, clause, params in conditions if applies]
    if not applied:
        return "", []
    return " WHERE " + " AND ".join(clause for clause, _ in applied), [p for _, params in applied for p in params]


def _where(query: Query) -> tuple[str, list]:
    failures = query.outcome == FAILURES
    cursor = (query.cursor[0], query.cursor[0], query.cursor[1]) if query.cursor else ()
    return where(
        (bool(query.model), "model = ?", (query.model,)),
        (bool(query.kind), "kind = ?", (query.kind,)),
        (failures, "outcome != ?", (OK,)),
        (bool(query.outcome) and not failures, "outcome = ?", (query.outcome,)),
        (bool(query.user_agent), "instr(user_agent, ?) > 0", (query.user_agent,)),
        (bool(query.q), "(instr(lower(error_message), lower(?)) > 0 OR instr(lower(error_type), lower(?)) > 0)",
         (query.q, query.q)),
        (query.tools is True, "coalesce(tools, 0) > 0", ()),
        (query.tools is False, "coalesce(tools, 0) = 0", ()),
        (query.priority is not None, "priority = ?", (query.priority,)),
        (query.since is not None, "ts >= ?", (query.since,)),
        (query.until is not None, "ts < ?", (query.until,)),
        (bool(cursor), "(ts < ? OR (ts = ? AND id < ?))", cursor),
    )


def as_record(row: sqlite3.Row) -> dict:
    """A row as the API and the export give it: ISO time, retries, no internal columns."""
    record = {k: row[k] for k in row.keys() if k not in ("id", "rank")}
    record["time"] = datetime.fromtimestamp(row["ts"], UTC).isoformat(timespec="milliseconds")
    record["retries"] = max(0, (row["attempts"] or 0) - 1)
    record["stream"] = bool(row["stream"]) if row["stream"] is not None else None
    return record


def search(conn: sqlite3.Connection, query: Query) -> dict:
    """One page, newest first: {"requests": [...], "next_cursor": str | None}."""
    clause, params = _where(query)
    rows = conn.execute(f"SELECT * FROM requests{clause} ORDER BY ts DESC, id DESC LIMIT ?",
                        [*params, query.limit + 1]).fetchall()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    cursor = encode_cursor(rows[-1]["ts"], rows[-1]["id"]) if more and rows else None
    return {"requests": [as_record(r) for r in rows], "next_cursor": cursor}


def facets(conn: sqlite3.Connection) -> dict:
    """The distinct models, kinds, user agents and priorities, for the dashboard's filter menus (bounded)."""
    out = {}
    for column, key in (("model", "models"), ("kind", "kinds"), ("user_agent", "user_agents"),
                        ("priority", "priorities")):
        out[key] = [r[0] for r in conn.execute(
            f"SELECT DISTINCT {column} FROM requests WHERE {column} IS NOT NULL ORDER BY {column} LIMIT 100")]
    return out


def iter_records(conn: sqlite3.Connection, batch: int = 1000):
    """Every row, oldest first (the export)."""
    last = 0
    while True:
        rows = conn.execute("SELECT * FROM requests WHERE id > ? ORDER BY id LIMIT ?", (last, batch)).fetchall()
        if not rows:
            return
        for row in rows:
            yield as_record(row)
        last = rows[-1]["id"]
