"""Reading the real proxy's request log from a test: the rows of given calls, once the writer has put them all there."""
from __future__ import annotations

from llmops.requestlog import store
from tests.support.helpers import wait_for


def logged(db, ids) -> dict[str, dict]:
    """{call_id: row} of every id in `ids`, waited for (15 s) until the log file holds them all."""
    def rows():
        if not db.exists():
            return None
        with store.connect_readonly(db) as conn:
            found = {r["call_id"]: dict(r) for r in conn.execute(
                f"SELECT * FROM requests WHERE call_id IN ({','.join('?' * len(ids))})", list(ids))}
        return found if len(found) == len(ids) else None

    return wait_for(rows, 15, f"{len(ids)} rows in {db}")
