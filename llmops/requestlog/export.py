"""`make requests-export`: the request log as JSON Lines (one request a line, oldest first), read-only."""
from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path

from . import store


def export(db: Path, out, since: float | None = None) -> int:
    """Write every row (from `since`, unix seconds) to the text stream `out`; return how many."""
    count = 0
    with closing(store.connect_readonly(db)) as conn:
        for record in store.iter_records(conn):
            if since is not None and record["ts"] < since:
                continue
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    from .. import settings as settings_module
    from ..errors import ConfigError

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", "-o", default="logs/requests.jsonl", help="file to write; '-' for stdout")
    parser.add_argument("--since", help="only rows from this time on: unix seconds, ISO 8601 or an age like 24h")
    parser.add_argument("--db", help="the SQLite file (default: REQUEST_LOG_PATH)")
    args = parser.parse_args(argv)
    try:
        db = Path(args.db) if args.db else settings_module.load().request_log_path
        since = store.parse_time("--since", args.since, time.time()) if args.since else None
    except (ConfigError, store.BadQuery) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not db.exists():
        print(f"error: {db}: no request log yet (the proxy writes it once a request goes through)", file=sys.stderr)
        return 1
    try:
        if args.output == "-":
            count = export(db, sys.stdout, since)
        else:
            target = Path(args.output)
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("w") as out:
                count = export(db, out, since)
    except (sqlite3.Error, OSError) as exc:
        print(f"error: cannot export {db}: {exc}", file=sys.stderr)
        return 1
    if args.output != "-":
        print(f"{count} requests written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
