"""The dashboard's "Alert history" section (its Blueprint): the receiver Alertmanager always sends to, the history
it keeps (data/alerts.db), and the page's one write, "silence for 1 h". docs/health.md says how it works.

POST /api/alerts/webhook   Alertmanager's webhook JSON; needs `Authorization: Bearer ALERT_RECEIVER_TOKEN`
GET  /api/alerts/history   the alerts, newest first: ?name= &state=firing|resolved
                           &source=alertmanager|prometheus &since= &until= &limit=
POST /api/alerts/silence   {"labels": {...}}: a 1 h silence through Alertmanager's API; needs the page's CSRF token
"""
from __future__ import annotations

import hmac
import json
import sqlite3
from datetime import UTC, datetime

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..alerts import amapi, payload, store
from ..errors import BadInput, Forbidden, ServiceError, Unauthorized
from .state import app_state

bp = Blueprint("alerthistory", __name__)
MAX_BODY = 1 << 20  # a notification of MAX_ALERTS alerts fits with room to spare
SILENCE_HOURS = 1.0
CSRF_HEADER = "X-CSRF-Token"


def _check_token(settings) -> None:
    """The token Alertmanager sends (from its 0600 file); compared in constant time. Nothing else may write."""
    token = str(settings.values.get("ALERT_RECEIVER_TOKEN") or "")
    if not token:
        raise Unauthorized("ALERT_RECEIVER_TOKEN is not set: the alert webhook refuses every notification")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise Unauthorized("missing or wrong token: the alert webhook takes notifications from the stack's Alertmanager")


def _json_body():
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise RequestEntityTooLarge(f"the body is over {MAX_BODY} bytes")
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY:
        raise RequestEntityTooLarge(f"the body is over {MAX_BODY} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("the body is not JSON", "body") from None


@bp.post("/api/alerts/webhook")
def webhook():
    state = app_state()
    settings = state["settings"]
    _check_token(settings)
    note = payload.parse(_json_body())
    try:
        with store.connect(settings.alert_history_path) as conn:
            store.record(conn, note, state["clock"](), settings.alert_history_days)
    except sqlite3.Error as exc:  # a 503: Alertmanager keeps the notification and tries again
        raise ServiceError(f"cannot write the alert history {settings.alert_history_path.name}: {exc}") from exc
    return jsonify(stored=len(note.alerts), status=note.status)


@bp.get("/api/alerts/history")
def history():
    state = app_state()
    settings, now = state["settings"], state["clock"]()
    query = store.parse_query(request.args.to_dict(), now=now)  # BadQuery: the app's 400
    path = settings.alert_history_path
    alerts, held, detail = [], {"notifications": 0, "alerts": 0}, ""
    if path.exists():  # nothing received yet: an empty history, and no file made by a read
        try:
            with store.connect(path) as conn:
                alerts, held = store.search(conn, query, now), store.counts(conn)
        except sqlite3.Error as exc:  # a status, not a 500: the page says why
            detail = f"cannot read the alert history {path.name}: {exc}"
    silences = _mark_silenced(alerts, state["session"], settings)
    return jsonify(alerts=alerts, history={"days": settings.alert_history_days, "available": not detail,
                                           "detail": detail, **held, "backfill": state["backfill"].status},
                   alertmanager={"enabled": bool(settings.alertmanager_enabled), "url": settings.alertmanager_url,
                                 "silences": silences})


def _mark_silenced(alerts: list[dict], session, settings) -> dict:
    """Give each firing alert `silenced_until`: the end of the Alertmanager silence holding it back now (made on
    this page or anywhere else), or None. So a reload does not offer "silence for 1 h" again. Alertmanager asked
    only when something fires; unreachable, the alerts say None and the answer says why."""
    for row in alerts:
        row["silenced_until"] = None
    firing = [row for row in alerts if not row["resolved"]]
    if not firing or not settings.alertmanager_enabled:
        return {"known": False, "detail": "" if not firing else "Alertmanager is off"}
    try:
        held = amapi.silenced_alerts(session, settings.alertmanager_url)
    except ServiceError as exc:
        return {"known": False, "detail": str(exc)}
    for row in firing:
        row["silenced_until"] = held.get(row["fingerprint"])
    return {"known": True, "detail": ""}


def _check_csrf() -> None:
    """A write the page sent: its per-process token in a header (a cross-site form cannot set headers, and a
    cross-site script's custom header needs a CORS preflight the dashboard never grants), and no foreign Origin."""
    token = app_state()["csrf_token"]
    if not hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), token.encode()):
        raise Forbidden(f"missing or wrong {CSRF_HEADER}: silences are created from the dashboard's page")
    origin = request.headers.get("Origin")
    if origin and origin.rstrip("/") != request.host_url.rstrip("/"):
        raise Forbidden(f"a request from {origin} may not create silences")


@bp.post("/api/alerts/silence")
def silence():
    _check_csrf()
    state = app_state()
    settings = state["settings"]
    doc = _json_body()
    labels = doc.get("labels") if isinstance(doc, dict) else None
    if not isinstance(labels, dict) or not labels.get("alertname"):
        raise BadInput("labels: an object of the alert's labels, with its alertname", "labels")
    for name, value in labels.items():
        if not isinstance(name, str) or not amapi.LABEL_NAME.match(name):
            raise BadInput(f"labels: {name!r} is not a label name", "labels")
        if not isinstance(value, str) or not value or len(value) > 1024:
            raise BadInput(f"labels: the value of {name} is not a string of 1-1024 characters", "labels")
    if not settings.alertmanager_enabled:
        raise ServiceError("Alertmanager is off (ALERTMANAGER_ENABLED=false): nothing to silence")
    now = datetime.fromtimestamp(state["clock"](), UTC)
    made = amapi.create_silence(state["session"], settings.alertmanager_url, labels, SILENCE_HOURS, now)
    return jsonify(**made, hours=SILENCE_HOURS)
