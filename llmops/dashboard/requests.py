"""The dashboard's request-log routes (a Flask blueprint): `GET /api/requests` and its filter menus.

Reads the SQLite file read-only (sqlite URI mode=ro) and the proxy workers' status files; never writes.
Belongs with the dashboard modules (llmops/dashboard/ once the package is restructured).
"""
from __future__ import annotations

import sqlite3
import time
from contextlib import closing

from flask import Blueprint, jsonify, request

from ..requestlog import store, writer


def log_state(settings, clock=time.time) -> dict:
    """Is the log on, where is it, how many rows were written and dropped, and why it is degraded."""
    status = writer.read_status(settings.request_log_status_dir, now=clock())
    state = {"enabled": bool(settings.request_log), "path": str(settings.request_log_path), **status}
    return state


def blueprint(settings, clock=time.time) -> Blueprint:
    """Routes over the request log named by `settings` (REQUEST_LOG_PATH, the state dir)."""
    bp = Blueprint("requestlog", __name__)
    path = settings.request_log_path

    def answer(compute) -> dict:
        state = log_state(settings, clock)
        if not path.exists():
            return {"log": state, **compute(None)}
        try:
            with closing(store.connect_readonly(path)) as conn:
                return {"log": state, **compute(conn)}
        except sqlite3.Error as exc:
            state["degraded"] = state["degraded"] or f"cannot read {path.name}: {exc}"
            return {"log": state, **compute(None)}

    @bp.get("/api/requests")
    def api_requests():
        query = store.parse_query(request.args.to_dict(), now=clock())
        return jsonify(answer(lambda conn: store.search(conn, query) if conn else
                              {"requests": [], "next_cursor": None}))

    @bp.get("/api/requests/facets")
    def api_facets():
        return jsonify(answer(lambda conn: store.facets(conn) if conn else
                              {"models": [], "kinds": [], "user_agents": []}))

    @bp.errorhandler(store.BadQuery)
    def bad_query(exc: store.BadQuery):
        return jsonify(error=str(exc), param=exc.param, status=400), 400

    return bp
