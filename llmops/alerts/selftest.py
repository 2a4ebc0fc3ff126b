"""`make alerts-test`: one test alert through Alertmanager to every receiver, and per receiver whether it went out.

Alertmanager 0.25 counts notifications by integration only (`alertmanager_notifications_total`,
`alertmanager_notifications_failed_total`, and per attempt `alertmanager_notification_requests_total` and
`_requests_failed_total`), and two receivers can share one (the dashboard and ALERT_WEBHOOK_URL are both
webhooks); its log names the receiver of each failed attempt it will retry (`receiver=slack
integration=slack[0] msg="Notify attempt failed..." err="..."`: a 5xx, a refused connection) and of each it gives
up on at once (`msg="Notify for alerts failed" err="webhook/webhook[0]: notify retry canceled due to
unrecoverable error after 1 attempts: unexpected status code 404..."`). So a receiver with a failure line has
failed, with that reason; the others of its integration succeeded when the integration's successful attempts
(finished requests minus failed ones) cover them. `alertmanager_notifications_total` is counted when a
notification begins, before its first attempt ends, so it cannot tell a send that went out from one still failing.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import amapi

TEST_ALERT = "LlmopsTestAlert"
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_RETRIED = re.compile(r'receiver=(\S+) integration=([a-z]+)\[\d+\] msg="Notify attempt failed[^"]*".*?err=' + _QUOTED)
_GAVE_UP = re.compile(r'msg="Notify for alerts failed".*?err=' + _QUOTED)
# One integration's error inside a "Notify for alerts failed" err (several are joined with "; ").
_PART = re.compile(r'(?:^|; )([^\s/;]+)/([a-z]+)\[\d+\]: (.*?)(?=; [^\s/;]+/[a-z]+\[\d+\]: |$)')
_RETRY_PREFIX = re.compile(r'^notify retry canceled (?:due to unrecoverable error )?after \d+ attempts: ')


@dataclass
class Result:
    receiver: str
    integration: str
    ok: bool | None = None  # None: no attempt seen in time
    reason: str = ""


def integrations(config: dict) -> list[tuple[str, str]]:
    """(receiver, integration) for every receiver of a rendered Alertmanager config."""
    return [(r["name"], key.removesuffix("_configs")) for r in config["receivers"] for key in r if key.endswith("_configs")]


def failures(log_text: str) -> dict[str, str]:
    """receiver -> the reason of its last failed attempt, from Alertmanager's log lines (retried or given up on)."""
    found = {}
    for line in log_text.splitlines():
        retried = _RETRIED.search(line)
        if retried:
            found[retried.group(1)] = _unquote(retried.group(3))
            continue
        gave_up = _GAVE_UP.search(line)
        for part in _PART.finditer(_unquote(gave_up.group(1))) if gave_up else ():
            found[part.group(1)] = _RETRY_PREFIX.sub("", part.group(3))
    return found


def _unquote(text: str) -> str:
    return text.replace('\\"', '"').replace("\\\\", "\\")


def _log_since(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def run(session, base_url: str, receivers: list[tuple[str, str]], log_path: Path, timeout: float,
        redact: Callable[[str], str], clock=time.monotonic, sleep=time.sleep) -> list[Result]:
    """Send the test alert, wait until every receiver is decided (or `timeout`), resolve the alert; the results."""
    start_counts = amapi.notification_counts(session, base_url)
    offset = log_path.stat().st_size if log_path.exists() else 0
    stamp = datetime.now(UTC)
    alert = {"labels": {"alertname": TEST_ALERT, "severity": "info", "test_id": stamp.strftime("%Y%m%dT%H%M%S%f")},
             "annotations": {"summary": "A test alert from `make alerts-test`",
                             "description": "Sent to check that every receiver gets the stack's alerts; it resolves at once."},
             "startsAt": stamp.isoformat().replace("+00:00", "Z")}
    amapi.post_alerts(session, base_url, [alert])
    results = [Result(name, kind) for name, kind in receivers]
    deadline = clock() + timeout
    try:
        while True:
            counts = amapi.notification_counts(session, base_url)
            failed = failures(_log_since(log_path, offset))
            for kind in {r.integration for r in results}:
                before, now = start_counts.get(kind, {}), counts.get(kind, {})
                succeeded = sum(sign * (now.get(key, 0.0) - before.get(key, 0.0))
                                for key, sign in (("requests", 1), ("requests_failed", -1)))
                mine = [r for r in results if r.integration == kind]
                for r in mine:
                    if r.receiver in failed:
                        r.ok, r.reason = False, redact(failed[r.receiver])
                healthy = [r for r in mine if r.receiver not in failed]
                if healthy and succeeded >= len(healthy):
                    for r in healthy:
                        r.ok = True
            if all(r.ok is not None for r in results) or clock() >= deadline:
                break
            sleep(0.5)
    finally:
        amapi.post_alerts(session, base_url, [{**alert, "endsAt": datetime.now(UTC).isoformat().replace("+00:00", "Z")}])
    for r in results:
        if r.ok is None:
            r.reason = f"no attempt seen within {timeout:g} s"
    return results
