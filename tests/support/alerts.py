"""Alertmanager's webhook JSON (version 4) as 0.25 sends it, for tests that play Alertmanager's part."""
from __future__ import annotations

import hashlib

ZERO = "0001-01-01T00:00:00Z"  # Go's zero time: what Alertmanager sends as endsAt of a firing alert


def alert(name: str = "BackendDown", status: str = "firing", starts: str = "2026-12-07T03:00:00.123456789Z",
          ends: str = ZERO, **labels: str) -> dict:
    labels = {"alertname": name, "severity": "critical", **labels}
    fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
    return {"status": status, "labels": labels,
            "annotations": {"summary": f"{name} summary", "description": f"{name}: why it fires"},
            "startsAt": starts, "endsAt": ends, "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": fingerprint}


def notification(*alerts: dict, status: str | None = None) -> dict:
    status = status or ("firing" if any(a["status"] == "firing" for a in alerts) else "resolved")
    first = alerts[0]["labels"]
    name = first.get("alertname") if isinstance(first, dict) else None
    return {"version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}', "truncatedAlerts": 0,
            "status": status, "receiver": "dashboard", "groupLabels": {"alertname": name},
            "commonLabels": first, "commonAnnotations": alerts[0]["annotations"],
            "externalURL": "http://127.0.0.1:9093", "alerts": list(alerts)}
