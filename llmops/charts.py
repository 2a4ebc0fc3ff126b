"""What the dashboard reads from Prometheus: chart series, the summary figures and firing alerts."""
from __future__ import annotations

from . import modeltraffic, modelview
from .errors import StackError
from .probes import NON_MODEL_ROUTES
from .promapi import MetricsUnavailable, PromAPI

WINDOWS = {"15m": 900, "30m": 1800, "1h": 3600, "3h": 10800, "6h": 21600, "12h": 43200, "24h": 86400}
POINTS = 120  # points per series: enough for a phone-width line, cheap for Prometheus

REAL = f'route!~"{NON_MODEL_ROUTES}",user_agent!~"llmops-canary.*"'
TOTAL = "litellm_proxy_total_requests_metric_total"


class BadWindow(StackError):
    """The chart window is not one of WINDOWS."""


def _quantile(q: float, family: str, rate: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({family}_bucket[{rate}])))"


def chart_specs(rate: str) -> list[dict]:
    """Charts as (id, title, unit, [(series name, PromQL)]) with `rate` as the rate() range."""
    ok = f'sum(rate({TOTAL}{{{REAL},status_code=~"2.."}}[{rate}]))'
    limited = f'sum(rate({TOTAL}{{{REAL},status_code="429"}}[{rate}]))'
    failed = f'sum(rate({TOTAL}{{{REAL},status_code!~"2..|429"}}[{rate}]))'
    judged = f'sum(rate({TOTAL}{{{REAL},status_code!="429"}}[{rate}]))'
    ttft_proxy, ttft_backend = "litellm_llm_api_time_to_first_token_metric", "llm_backend_time_to_first_token_seconds"
    return [
        {"id": "requests", "title": "Requests per second", "unit": "req/s",
         "series": [("ok", ok), ("rate limited (429)", limited), ("failed", failed)]},
        {"id": "errors", "title": "Error ratio (429s excluded)", "unit": "ratio",
         "series": [("error ratio", f"({failed} or vector(0)) / {judged}")]},
        {"id": "latency", "title": "Request latency", "unit": "s",
         "series": [(f"p{int(q * 100)}", _quantile(q, "litellm_request_total_latency_metric", rate))
                    for q in (0.5, 0.95, 0.99)]},
        {"id": "ttft", "title": "Time to first token", "unit": "s",
         "series": [(f"p{int(q * 100)}", f"{_quantile(q, ttft_proxy, rate)} or {_quantile(q, ttft_backend, rate)}")
                    for q in (0.5, 0.95)]},
        {"id": "tokens", "title": "Output tokens per second", "unit": "tok/s",
         "series": [("via proxy", f"sum(rate(litellm_output_tokens_metric_total[{rate}]))"),
                    ("backend", f"sum(rate(llm_backend_output_tokens_total[{rate}]))")]},
        {"id": "inflight", "title": "In flight and queued", "unit": "requests",
         "series": [("proxy in flight", "sum(litellm_in_flight_requests)"),
                    ("backend in flight", "sum(llm_backend_in_flight)"),
                    ("backend queued", "sum(llm_backend_queue_depth)")]},
    ]


def window_params(window: str, now: float) -> tuple[float, float, float, str]:
    """(start, end, step, rate range) for a window name; raises BadWindow naming the allowed values."""
    if window not in WINDOWS:
        raise BadWindow(f"window {window!r} is not one of {', '.join(WINDOWS)}")
    seconds = WINDOWS[window]
    step = max(15.0, seconds / POINTS)
    rate = f"{int(max(60.0, 4 * step))}s"  # several scrapes per rate() so lines are not all gaps
    return now - seconds, now, step, rate


def with_gaps(points: list, step: float) -> list:
    """[[t, v], ...] with a [t, None] wherever samples are missing, so a line breaks instead of bridging
    the time the stack was stopped."""
    out: list = []
    for t, v in points:
        if out and t - out[-1][0] > 1.5 * step:
            out.append([round(out[-1][0] + step, 3), None])
        out.append([round(t, 3), v])
    return out


def charts(prom: PromAPI, window: str, now: float, model: str | None = None, embedding_models=()) -> dict:
    """Every chart's series over the window (one model's, or all); available=False with the reason when Prometheus is down."""
    start, end, step, rate = window_params(window, now)
    doc = {"available": True, "detail": "", "window": window, "start": start, "end": end, "step": step, "charts": [],
           "model": model or modeltraffic.ALL}
    try:
        for spec in modeltraffic.model_specs(chart_specs(rate), model, rate, list(embedding_models)):
            chart = {"id": spec["id"], "title": spec["title"], "unit": spec["unit"], "series": []}
            for name, expr in spec["series"]:
                found = prom.query_range(expr, start, end, step)
                points = found[0].points if found else []
                chart["series"].append({"name": name, "points": with_gaps(points, step)})
            chart["empty"] = not any(any(v is not None for _, v in s["points"]) for s in chart["series"])
            doc["charts"].append(chart)
    except MetricsUnavailable as exc:
        return {**doc, "available": False, "detail": str(exc), "charts": []}
    return doc


def summary(prom: PromAPI, window: str = "5m") -> dict:
    """Headline figures over the last window (None where there is no data yet)."""
    specs = {spec["id"]: spec for spec in chart_specs(window)}
    wanted = {
        "request_rate": specs["requests"]["series"][0][1],
        "rate_limited_rate": specs["requests"]["series"][1][1],
        "error_ratio": specs["errors"]["series"][0][1],
        "latency_p50_s": specs["latency"]["series"][0][1],
        "latency_p95_s": specs["latency"]["series"][1][1],
        "ttft_p50_s": specs["ttft"]["series"][0][1],
        "output_tokens_per_s": specs["tokens"]["series"][0][1],
        "in_flight": specs["inflight"]["series"][0][1],
        "queued": specs["inflight"]["series"][2][1],
    }
    try:
        values = {name: prom.scalar(expr) for name, expr in wanted.items()}
    except MetricsUnavailable as exc:
        return {"available": False, "detail": str(exc), "window": window, "metrics": {}}
    rounded = {k: (None if v is None else round(v, 6)) for k, v in values.items()}
    return {"available": True, "detail": "", "window": window, "metrics": rounded}


def firing_alerts(prom: PromAPI) -> dict:
    """Alerts firing in Prometheus, most severe first, plus how many are pending."""
    try:
        alerts = prom.alerts()
    except MetricsUnavailable as exc:
        return {"available": False, "detail": str(exc), "firing": [], "pending": 0}
    order = {"critical": 0, "page": 0, "warning": 1, "info": 2}
    firing = [
        {
            "name": a.get("labels", {}).get("alertname", "?"),
            "severity": a.get("labels", {}).get("severity", "none"),
            "summary": a.get("annotations", {}).get("summary") or a.get("annotations", {}).get("description", ""),
            "since": a.get("activeAt"),
            "labels": {k: v for k, v in a.get("labels", {}).items() if k not in ("alertname", "severity")},
        }
        for a in alerts
        if a.get("state") == "firing"
    ]
    firing.sort(key=lambda a: (order.get(a["severity"], 3), a["name"]))
    pending = sum(1 for a in alerts if a.get("state") == "pending")
    return {"available": True, "detail": "", "firing": firing, "pending": pending}


def models_table(status: dict) -> dict:
    """Models by name: configured in the proxy, present on which backends, loaded where (size, expiry)."""
    components = status.get("components", {})
    configured = list((components.get("proxy") or {}).get("models") or [])
    backends = (components.get("ollama") or {}).get("backends") or []
    rows: dict[str, dict] = {}

    def row(name: str) -> dict:
        return rows.setdefault(name, {"name": name, "configured": False, "present_on": [], "loaded_on": []})

    for name in configured:
        row(name)["configured"] = True
    for backend in backends:
        for model in backend.get("present") or []:
            entry = row(str(model.get("name")))
            entry["present_on"].append(backend.get("backend"))
            entry["size"] = model.get("size")
        for model in backend.get("loaded") or []:
            row(str(model.get("name")))["loaded_on"].append(
                {"backend": backend.get("backend"), "size": model.get("size"), "size_vram": model.get("size_vram"),
                 "expires_at": model.get("expires_at")}
            )
    proxy_up = (components.get("proxy") or {}).get("status") == "healthy"
    backends_up = any(b.get("status") == "healthy" for b in backends)
    for entry in rows.values():
        entry["note"] = modelview.route_note(entry["configured"], bool(entry["present_on"]), backends_up, proxy_up)
    return {
        "configured": configured,
        "backends": [{"backend": b.get("backend"), "status": b.get("status"), "present": b.get("present") or [],
                      "loaded": b.get("loaded") or []} for b in backends],
        "models": sorted(rows.values(), key=lambda r: r["name"]),
    }
