"""The alert history recovered from Prometheus: what fired while the dashboard was down.

Alertmanager 0.25 never sends a resolved-only notification to a receiver it never told about the firing alert
(its DedupStage), so an alert that fired and resolved while the dashboard was down never reaches the history by
notification. Prometheus keeps it: `ALERTS{alertstate="firing"}` has a sample at each evaluation while the alert
fires. When the dashboard starts it reads that series over the window it may have missed (from the last time it
was known to be up, minus a margin, capped at ALERT_HISTORY_DAYS; Prometheus answers only for what it keeps), and
each contiguous firing interval of a label set that the history does not already cover becomes an occurrence with
source "prometheus". docs/health.md says how it works and what it cannot know.
"""
from __future__ import annotations

import logging
import math
import re
import sqlite3
import threading

from ..errors import MetricsUnavailable
from . import store

log = logging.getLogger("llmops.dashboard.backfill")
QUERY = 'ALERTS{alertstate="firing"}'
MAX_POINTS = 10_000  # Prometheus refuses a range query of more than 11,000 points per series
HEARTBEAT_S = 60.0  # while up, the dashboard records that it is, this often
RETRY_S = 60.0  # Prometheus down at the start: tried again this often until it answers
MARGIN_S = 2 * HEARTBEAT_S + 300.0  # the window starts this long before the dashboard was last known up
_DROPPED = ("__name__", "alertstate")

_IF = re.compile(r"\{\{-?\s*if\s+\$labels\.(\w+)\s*-?\}\}(.*?)(?:\{\{-?\s*else\s*-?\}\}(.*?))?\{\{-?\s*end\s*-?\}\}", re.S)
_LABEL = re.compile(r"\{\{-?\s*\$labels\.(\w+)\s*-?\}\}")


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint of a label set (Prometheus's model.LabelSet.Fingerprint: FNV-1a 64)."""
    value = 14695981039346656037
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode() + b"\xff":
                value = ((value ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def render(template: str, labels: dict[str, str]) -> str:
    """`{{ $labels.x }}` and `{{ if $labels.x }}a{{ else }}b{{ end }}` filled in; anything else (`$value`, functions,
    nesting) cannot be rendered without the evaluation, so such a template is returned as it is."""
    text = _IF.sub(lambda m: m.group(2) if labels.get(m.group(1)) else (m.group(3) or ""), template)
    text = _LABEL.sub(lambda m: labels.get(m.group(1), ""), text)
    return template if "{{" in text else text


def rule_annotations(groups: object) -> dict[str, dict[str, str]]:
    """Alert name -> its rule's annotations (templates) from /api/v1/rules's groups; malformed parts are skipped."""
    found: dict[str, dict[str, str]] = {}
    for group in groups if isinstance(groups, list) else []:
        rules = group.get("rules") if isinstance(group, dict) else None
        for rule in rules if isinstance(rules, list) else []:
            if not isinstance(rule, dict) or rule.get("type") != "alerting" or not isinstance(rule.get("name"), str):
                continue
            notes = rule.get("annotations")
            if isinstance(notes, dict):
                found.setdefault(rule["name"], {k: v for k, v in notes.items() if isinstance(k, str) and isinstance(v, str)})
    return found


def step_for(start: float, end: float) -> float:
    """The query's step: 1 s, or coarser so that the window fits in MAX_POINTS (the recovered times' resolution)."""
    return float(max(1, math.ceil((end - start) / MAX_POINTS)))


def intervals(series: list, end: float, step: float, annotations: dict[str, dict[str, str]]) -> list[store.Recovered]:
    """Each contiguous run of a label set's samples -> one interval. Samples are `step` apart while it fires; a gap
    longer than 1.5 steps ends a run. A run still present at the query's end is still firing (ends_at None); one
    that ended is given its last sample plus one step as its end (it resolved within that step)."""
    found: list[store.Recovered] = []
    for item in series:
        labels = {k: v for k, v in (item.labels or {}).items() if k not in _DROPPED and isinstance(v, str)}
        if not labels.get("alertname"):
            continue
        times = sorted(t for t, v in item.points if v is not None)
        notes = {k: render(v, labels) for k, v in annotations.get(labels["alertname"], {}).items()}
        runs, first, last = [], None, None
        for t in times:
            if first is None:
                first = last = t
            elif t - last > 1.5 * step:
                runs.append((first, last))
                first = last = t
            else:
                last = t
        if first is not None:
            runs.append((first, last))
        for first, last in runs:
            ends = None if last >= end - 1.5 * step else last + step
            found.append(store.Recovered(labels, first, ends, notes, fingerprint(labels)))
    return found


def window(conn, now: float, keep_days: int) -> tuple[float, float]:
    """[start, now]: from the last time the dashboard was known up (or the newest notification) minus MARGIN_S,
    never before ALERT_HISTORY_DAYS ago; all of ALERT_HISTORY_DAYS for a new history."""
    floor = now - keep_days * 86400
    known = [t for t in (store.get_meta(conn, "up_until"), store.newest_notification(conn)) if t is not None]
    return (max(floor, max(known) - MARGIN_S) if known else floor), now


def backfill_once(prom, path, now: float, keep_days: int) -> dict:
    """One backfill: the window, the query, the merge. Raises MetricsUnavailable when Prometheus cannot answer."""
    with store.connect(path) as conn:
        start, end = window(conn, now, keep_days)
        step = step_for(start, end)
        start = math.floor(start / step) * step  # on the step's grid: the same times from one start to the next
        series = prom.query_range(QUERY, start, end, step)
        try:
            notes = rule_annotations(prom.rules())
        except MetricsUnavailable:
            notes = {}  # the intervals without the reason text rather than no intervals
        found = intervals(series, end, step, notes)
        done = store.merge_recovered(conn, found, now, keep_days, up_until=now)
    return {"start": start, "end": end, "step": step, **done}


class Backfiller:
    """At the dashboard's start: one backfill, retried every RETRY_S while Prometheus cannot answer (one log line
    says so, and another when it worked); then a heartbeat into the history every HEARTBEAT_S, which is where the
    next start's window begins."""

    def __init__(self, prom, path, keep_days: int, clock, heartbeat_s: float = HEARTBEAT_S, retry_s: float = RETRY_S):
        self.prom, self.path, self.keep_days, self.clock = prom, path, keep_days, clock
        self.heartbeat_s, self.retry_s = heartbeat_s, retry_s
        self.status: dict = {"state": "pending", "detail": ""}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-backfill", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def attempt(self) -> bool:
        """One try; True when it is done. Never raises: a bad answer or file is a status and a log line."""
        try:
            done = backfill_once(self.prom, self.path, self.clock(), self.keep_days)
        except (MetricsUnavailable, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            detail = str(exc) if isinstance(exc, MetricsUnavailable) else f"a bad answer from Prometheus ({type(exc).__name__})"
            if self.status["state"] != "waiting":
                log.warning("alert history backfill from Prometheus failed: %s; trying again every %.0f s",
                            detail, self.retry_s)
            self.status = {"state": "waiting", "detail": detail}
            return False
        except sqlite3.Error as exc:
            if self.status["state"] != "waiting":
                log.warning("alert history backfill cannot write %s: %s; trying again every %.0f s",
                            self.path.name, exc, self.retry_s)
            self.status = {"state": "waiting", "detail": f"cannot write the alert history: {exc}"}
            return False
        log.info("alert history backfilled from Prometheus over %.0f s (step %.0f s): %d added, %d updated, "
                 "%d already known", done["end"] - done["start"], done["step"], done["added"], done["updated"],
                 done["covered"])
        self.status = {"state": "done", "detail": "", **{k: done[k] for k in ("added", "updated", "covered")}}
        return True

    def heartbeat(self) -> None:
        try:
            with store.connect(self.path) as conn:
                store.set_meta(conn, "up_until", self.clock())
        except sqlite3.Error as exc:  # the next start's window is then only wider
            log.debug("alert history heartbeat not written: %s", exc)

    def _run(self) -> None:
        while not self.attempt():
            if self._stop.wait(self.retry_s):
                return
        while not self._stop.wait(self.heartbeat_s):
            self.heartbeat()
