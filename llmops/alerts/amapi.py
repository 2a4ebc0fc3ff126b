"""Alertmanager's HTTP API (v2, as 0.25 serves it): silences, posting alerts, and its notification counters.

Takes a requests-like session and the base URL, so tests can hand it a fake; a connection failure or an
answer that is not what the API documents is a ServiceError saying so.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import requests

from ..errors import ServiceError

LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# alertmanager_notifications_total{integration="webhook"} 3 (and _failed_total, with a reason label in 0.25+):
# notifications begun and given up; alertmanager_notification_requests_total (and _failed_total): attempts finished.
_SAMPLE = re.compile(r'^alertmanager_(notifications|notifications_failed|notification_requests|'
                     r'notification_requests_failed)_total\{([^}]*)\}\s+([0-9.eE+-]+)$')
_KINDS = {"notifications": "total", "notifications_failed": "failed",
          "notification_requests": "requests", "notification_requests_failed": "requests_failed"}


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _call(session, method: str, url: str, timeout: float, **kwargs):
    try:
        return session.request(method, url, timeout=timeout, **kwargs)
    except requests.RequestException as exc:
        raise ServiceError(f"Alertmanager cannot be reached at {url.split('/api')[0]}: {type(exc).__name__}") from exc


def create_silence(session, base_url: str, labels: dict[str, str], hours: float, now: datetime,
                   created_by: str = "llmops dashboard", timeout: float = 5.0) -> dict:
    """Silence the alert with exactly these labels (equality matchers) from now for `hours`; its id and end."""
    ends = now + timedelta(hours=hours)
    body = {
        "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in sorted(labels.items())],
        "startsAt": _iso(now), "endsAt": _iso(ends), "createdBy": created_by,
        "comment": f"silenced for {hours:g} h from the dashboard",
    }
    response = _call(session, "POST", f"{base_url}/api/v2/silences", timeout, json=body)
    if response.status_code != 200:
        raise ServiceError(f"Alertmanager refused the silence: HTTP {response.status_code} {response.text[:200]}")
    try:
        silence_id = response.json()["silenceID"]
    except (ValueError, KeyError, TypeError):
        raise ServiceError("Alertmanager's answer to the silence has no silenceID") from None
    return {"silence_id": silence_id, "ends_at": _iso(ends)}


def silenced_alerts(session, base_url: str, timeout: float = 2.0) -> dict[str, str]:
    """{fingerprint: until} of the alerts Alertmanager holds back by a silence now (its
    `status.silencedBy` in GET /api/v2/alerts, whoever made the silence) and when the last of those silences ends
    (GET /api/v2/silences). An answer that is not what the API documents is a ServiceError."""
    alerts = _call(session, "GET", f"{base_url}/api/v2/alerts", timeout)
    silences = _call(session, "GET", f"{base_url}/api/v2/silences", timeout)
    for name, response in (("alerts", alerts), ("silences", silences)):
        if response.status_code != 200:
            raise ServiceError(f"Alertmanager's /api/v2/{name} answered HTTP {response.status_code}")
    try:
        ends = {s["id"]: s["endsAt"] for s in silences.json() if s["status"]["state"] == "active"}
        found: dict[str, str] = {}
        for item in alerts.json():
            ids = [i for i in item["status"].get("silencedBy") or [] if i in ends]
            if ids:
                found[item["fingerprint"]] = max(ends[i] for i in ids)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ServiceError("Alertmanager's alerts or silences are not in the shape its API documents") from None
    return found


def post_alerts(session, base_url: str, alerts: list[dict], timeout: float = 5.0) -> None:
    """POST alerts to /api/v2/alerts, as Prometheus does."""
    response = _call(session, "POST", f"{base_url}/api/v2/alerts", timeout, json=alerts)
    if response.status_code != 200:
        raise ServiceError(f"Alertmanager refused the alerts: HTTP {response.status_code} {response.text[:200]}")


def notification_counts(session, base_url: str, timeout: float = 5.0) -> dict[str, dict[str, float]]:
    """{integration: {"total", "failed", "requests", "requests_failed"}} from Alertmanager's own /metrics:
    notifications begun and those given up on (summed over reasons), and the attempts (requests) that have
    finished and those of them that failed. A notification is counted in "total" when it begins, before its
    first attempt ends, so only requests minus failed requests counts sends that went out."""
    response = _call(session, "GET", f"{base_url}/metrics", timeout)
    if response.status_code != 200:
        raise ServiceError(f"Alertmanager's /metrics answered HTTP {response.status_code}")
    counts: dict[str, dict[str, float]] = {}
    for line in response.text.splitlines():
        match = _SAMPLE.match(line.strip())
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2)))
        integration = labels.get("integration")
        if not integration:
            continue
        row = counts.setdefault(integration, dict.fromkeys(_KINDS.values(), 0.0))
        row[_KINDS[match.group(1)]] += float(match.group(3))
    return counts
