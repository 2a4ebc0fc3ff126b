"""The dashboard's "Requests" section (its Blueprint): `GET /api/requests` and its filter menus.

Reads the SQLite file read-only (sqlite URI mode=ro) and the proxy workers' status files; never writes.
"""
from __future__ import annotations

import sqlite3
import time
from contextlib import closing

from flask import Blueprint, jsonify, request

from ..requestlog import store, writer
from .state import app_state


def log_state(settings, clock=time.time) -> dict:
    """Is the log on, where is it, how many rows were written and dropped, and why it is degraded."""
    status = writer.read_status(settings.request_log_status_dir, now=clock())
    state = {"enabled": bool(settings.request_log), "path": str(settings.request_log_path), **status}
    return state


bp = Blueprint("requestlog", __name__)


def _answer(compute) -> dict:
    """The log's state and `compute(connection)` (None when the file is missing or unreadable)."""
    settings, clock = app_state()["settings"], app_state()["clock"]
    path = settings.request_log_path
    log = log_state(settings, clock)
    if not path.exists():
        return {"log": log, **compute(None)}
    try:
        with closing(store.connect_readonly(path)) as conn:
            return {"log": log, **compute(conn)}
    except sqlite3.Error as exc:
        log["degraded"] = log["degraded"] or f"cannot read {path.name}: {exc}"
        return {"log": log, **compute(None)}


@bp.get("/api/requests")
def api_requests():
    query = store.parse_query(request.args.to_dict(), now=app_state()["clock"]())  # BadQuery: the app's 400
    return jsonify(_answer(lambda conn: store.search(conn, query) if conn else {"requests": [], "next_cursor": None}))


@bp.get("/api/requests/facets")
def api_facets():
    return jsonify(_answer(lambda conn: store.facets(conn) if conn else {"models": [], "kinds": [], "user_agents": [],
                                                                      "priorities": []}))
