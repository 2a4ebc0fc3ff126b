"""The dashboard's Queue section: the proxy's priority queue from Prometheus (docs/queue.md).

What waits now by priority, the wait's p50/p95 by priority over the window, each backend's busy and total slots
and the LiteLLM health checks it was sent outside the queue over the window, and the refusals by reason over the
window. The gauges are the shared state read once (several proxy workers
give one value), so they are maxed, not summed, across the proxy's series.
"""
from __future__ import annotations

from ..proxy.queue import REASONS
from .promapi import MetricsUnavailable, PromAPI


def queries(seconds: int) -> dict[str, str]:
    rate = f"{seconds}s"
    wait = "llmops_queue_wait_seconds_bucket"
    return {
        "waiting": "sum by (priority) (max by (model, priority) (llmops_queue_waiting))",
        "p50_s": f"histogram_quantile(0.5, sum by (priority, le) (rate({wait}[{rate}])))",
        "p95_s": f"histogram_quantile(0.95, sum by (priority, le) (rate({wait}[{rate}])))",
        "admitted": f"sum by (priority) (increase(llmops_queue_wait_seconds_count[{rate}]))",
        "busy": "max by (backend, model) (llmops_queue_busy_slots)",
        "slots": "max by (backend, model) (llmops_queue_slots)",
        "rejected": f"sum by (reason) (increase(llmops_queue_rejected_total[{rate}]))",
        "health_checks": f"sum by (backend, model) (increase(llmops_queue_health_checks_total[{rate}]))",
    }


def _int(value: float | None) -> int:
    return int(round(value)) if value is not None else 0


def queue(prom: PromAPI, window: str, seconds: int) -> dict:
    """The section's document: {available, detail, window, enabled, priorities, backends, rejected}."""
    doc = {"available": True, "detail": "", "window": window, "enabled": False, "priorities": [], "backends": [],
           "rejected": dict.fromkeys(REASONS, 0)}
    try:
        found = {name: prom.query(expr) for name, expr in queries(seconds).items()}
    except MetricsUnavailable as exc:
        return {**doc, "available": False, "detail": str(exc)}
    rows: dict[int, dict] = {}

    def row(priority: str | None) -> dict | None:
        try:
            number = int(priority or "")
        except ValueError:
            return None
        return rows.setdefault(number, {"priority": number, "waiting": 0, "admitted": 0, "p50_s": None, "p95_s": None})

    for name in ("waiting", "admitted"):
        for sample in found[name]:
            if (r := row(sample.labels.get("priority"))) is not None:
                r[name] = _int(sample.value)
    for name in ("p50_s", "p95_s"):
        for sample in found[name]:
            if (r := row(sample.labels.get("priority"))) is not None and sample.value is not None:
                r[name] = round(sample.value, 4)
    backends: dict[tuple[str, str], dict] = {}
    for name in ("slots", "busy"):
        for sample in found[name]:
            key = (sample.labels.get("backend", ""), sample.labels.get("model", ""))
            entry = backends.setdefault(key, {"backend": key[0], "model": key[1], "busy": 0, "slots": 0,
                                              "health_checks": 0})
            entry[name] = _int(sample.value)
    for sample in found["health_checks"]:  # only on backends the queue knows: they are its load beside the slots
        key = (sample.labels.get("backend", ""), sample.labels.get("model", ""))
        if key in backends:
            backends[key]["health_checks"] = _int(sample.value)
    for sample in found["rejected"]:
        reason = sample.labels.get("reason")
        if reason:
            doc["rejected"][reason] = _int(sample.value)
    doc["enabled"] = bool(backends)
    doc["priorities"] = [rows[p] for p in sorted(rows) if rows[p]["waiting"] or rows[p]["admitted"]]
    doc["backends"] = sorted(backends.values(), key=lambda b: (b["backend"], b["model"]))
    if not doc["enabled"]:
        doc["detail"] = "no queue series in Prometheus: the queue is off (QUEUE_ENABLED=false) or has served nothing yet"
    return doc
