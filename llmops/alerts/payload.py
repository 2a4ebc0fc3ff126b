"""Alertmanager's webhook JSON (version 4, as Alertmanager 0.25 sends it), checked field by field.

A notification that is not in that shape is the sender's mistake: BadInput naming the field, answered 400.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..errors import BadInput

STATES = ("firing", "resolved")
MAX_ALERTS = 1000  # Alertmanager sends every alert of a group (max_alerts: 0); a group this large is not ours


@dataclass(frozen=True)
class Alert:
    """One alert of a notification."""

    fingerprint: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None  # None while firing (Alertmanager sends the zero time or a future one)
    generator_url: str


@dataclass(frozen=True)
class Notification:
    """One webhook call: a group's state and its alerts."""

    status: str
    receiver: str
    group_key: str
    alerts: tuple[Alert, ...]
    truncated: int


def parse_time(field: str, value: object) -> float | None:
    """RFC 3339 as Go writes it (up to nanoseconds, Z or an offset) -> unix seconds; Go's zero time -> None."""
    if not isinstance(value, str) or not value:
        raise BadInput(f"{field}: {value!r} is not an RFC 3339 time", field)
    text = value.replace("Z", "+00:00")
    if "." in text:  # Python reads at most microseconds: cut the nanoseconds Go writes
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}" if digits else head + rest
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"{field}: {value!r} is not an RFC 3339 time", field) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when.year <= 1:
        return None
    return when.timestamp()


def _strings(field: str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BadInput(f"{field}: not an object of strings", field)
    return dict(value)


def _alert(i: int, raw: object) -> Alert:
    field = f"alerts[{i}]"
    if not isinstance(raw, dict):
        raise BadInput(f"{field}: not an object", field)
    status = raw.get("status")
    if status not in STATES:
        raise BadInput(f"{field}.status: {status!r} is not firing or resolved", f"{field}.status")
    labels = _strings(f"{field}.labels", raw.get("labels"))
    if not labels.get("alertname"):
        raise BadInput(f"{field}.labels: no alertname", f"{field}.labels")
    starts = parse_time(f"{field}.startsAt", raw.get("startsAt"))
    if starts is None:
        raise BadInput(f"{field}.startsAt: the zero time", f"{field}.startsAt")
    ends = parse_time(f"{field}.endsAt", raw["endsAt"]) if raw.get("endsAt") else None
    fingerprint = raw.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise BadInput(f"{field}.fingerprint: missing", f"{field}.fingerprint")
    url = raw.get("generatorURL") or ""
    return Alert(fingerprint, status, labels, _strings(f"{field}.annotations", raw.get("annotations")), starts,
                 ends if status == "resolved" else None, url if isinstance(url, str) else "")


def parse(doc: object) -> Notification:
    """The webhook body (already decoded JSON) -> Notification; BadInput naming the first bad field."""
    if not isinstance(doc, dict):
        raise BadInput("the body is not a JSON object (Alertmanager's webhook JSON)", "body")
    if doc.get("version") != "4":
        raise BadInput(f"version: {doc.get('version')!r} is not \"4\" (Alertmanager's webhook format)", "version")
    status = doc.get("status")
    if status not in STATES:
        raise BadInput(f"status: {status!r} is not firing or resolved", "status")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise BadInput("alerts: not a list of alerts", "alerts")
    if len(alerts) > MAX_ALERTS:
        raise BadInput(f"alerts: {len(alerts)} alerts, more than {MAX_ALERTS}", "alerts")
    truncated = doc.get("truncatedAlerts") or 0
    return Notification(status, str(doc.get("receiver") or ""), str(doc.get("groupKey") or ""),
                        tuple(_alert(i, a) for i, a in enumerate(alerts)), int(truncated) if isinstance(truncated, int) else 0)
