"""The dashboard's "Load tests" section: the kept generator runs, listed and served read-only.

Only files a run folder is known to hold are served (report.html, summary.json, run.json,
requests.jsonl), from folders named like a run, resolved inside the results folder: nothing else
under logs/ (or anywhere) can be reached through these routes.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, jsonify, url_for

from ..traffic import results
from .state import app_state

LIST_LIMIT = 50  # newest runs listed; older ones stay on disk
MIMETYPES = {".html": "text/html; charset=utf-8", ".json": "application/json",
             ".jsonl": "application/x-ndjson; charset=utf-8"}
# A report is self-contained: it may run its inline script and nothing may be fetched.
REPORT_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"


bp = Blueprint("loadtests", __name__)


def _folder() -> Path:
    """The results folder the settings name (read per request: settings may change)."""
    return results.dir_of(app_state()["settings"])


@bp.get("/api/loadtests")
def api_loadtests():
    root = _folder()
    runs = []
    for stored in results.list_runs(root, LIST_LIMIT):
        row = results.headline(stored)
        row["report_url"] = url_for(".run_file", name=stored.name, filename=results.REPORT_FILE) \
            if row["report"] else None
        row["summary_url"] = url_for(".run_file", name=stored.name, filename=results.SUMMARY_FILE) \
            if stored.summary is not None else None
        runs.append(row)
    # The newest capacity answer, whatever ran since: "how many at once" outlives the runs after it.
    last = next(({"name": r["name"], "started_at": r["started_at"], "model": r["model"], "report_url": r["report_url"],
                  **r["capacity"]} for r in runs if r.get("capacity")), None)
    return jsonify(available=root.is_dir(), folder=root.name, runs=runs, last_capacity=last,
                   detail="" if root.is_dir() else "no load test kept yet: run `make load-test`")


@bp.get("/loadtests/<name>/<filename>")
def run_file(name: str, filename: str):
    if not results.RUN_NAME.match(name) or filename not in results.FILES:
        abort(404, description="no such load-test file")
    root = _folder().resolve()
    path = (root / name / filename).resolve()
    # A symlinked folder or file pointing elsewhere resolves outside root and is refused.
    if path.parent.parent != root or not path.is_file():
        abort(404, description="no such load-test file")
    try:
        body = path.read_bytes()
    except OSError:
        abort(404, description="load-test file unreadable")
    # Read, not streamed, so the app's last check for the key still sees the bytes.
    response = Response(body, mimetype=None, content_type=MIMETYPES.get(path.suffix, "text/plain"))
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if filename == results.REPORT_FILE:
        response.headers["Content-Security-Policy"] = REPORT_CSP
    return response
