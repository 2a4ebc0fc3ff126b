"""What the dashboard reads from Prometheus: chart series, the summary figures and firing alerts."""
from __future__ import annotations

import math

from .. import outcomes
from ..durations import promql_duration, promql_seconds
from ..errors import BadWindow
from ..proxy import counts
from ..stack import modelview
from . import modeltraffic
from .promapi import MetricsUnavailable, PromAPI

WINDOWS = {"15m": 900, "30m": 1800, "1h": 3600, "3h": 10800, "6h": 21600, "12h": 43200, "24h": 86400}
POINTS = 120  # points per series: enough for a phone-width line, cheap for Prometheus

REAL = counts.REAL
TOTAL = counts.TOTAL
BY_CLASS = "by_class"  # a series spec drawn from one query by status_code, one series per outcome class


def _quantile(q: float, family: str, rate: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({family}_bucket[{rate}])))"


def requests_expr(step: float) -> str:
    """Real requests in each chart step, by status code, counted from zero (llmops/proxy/counts.py).

    The grid is the chart's step itself: each point is the counter's difference since the previous
    point (a new series or a reset counted from zero), as cheap as rate(). Query it at multiples of
    the step (aligned()) so that the points tile the window; a reset then loses only what was scraped
    between the previous point and the crash.
    """
    return counts.count_expr(promql_duration(step), by=("status_code",), grid=promql_duration(step))


def aligned(start: float, end: float, step: float) -> tuple[float, float]:
    """[start, end] widened to multiples of step; a point past now counts up to now."""
    return math.floor(start / step) * step, math.ceil(end / step) * step


def chart_specs(rate: str) -> list[dict]:
    """Charts as (id, title, unit, [(series name, PromQL)]) with `rate` as the rate() range.

    The requests and errors charts are drawn from exact per-step counts instead (BY_CLASS: see charts()).
    """
    ttft_proxy, ttft_backend = "litellm_llm_api_time_to_first_token_metric", "llm_backend_time_to_first_token_seconds"
    return [
        {"id": "requests", "title": "Requests per second, by outcome", "unit": "req/s", "series": BY_CLASS},
        {"id": "errors", "title": "Failure ratio (server errors and timeouts)", "unit": "ratio", "series": BY_CLASS},
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
        by_class = None
        for spec in modeltraffic.model_specs(chart_specs(rate), model, rate, list(embedding_models)):
            chart = {"id": spec["id"], "title": spec["title"], "unit": spec["unit"], "series": []}
            if spec["series"] == BY_CLASS:
                if by_class is None:
                    expr = requests_expr(step)
                    expr = modeltraffic.filter_expr(expr, model) if model else expr
                    by_class = class_series(prom.query_range(expr, *aligned(start, end, step), step), step)
                chart["series"] = list(by_class[spec["id"]])
            for name, expr in spec.get("extra", []) if spec["series"] == BY_CLASS else spec["series"]:
                found = prom.query_range(expr, start, end, step)
                points = found[0].points if found else []
                chart["series"].append({"name": name, "points": with_gaps(points, step)})
            chart["empty"] = not any(any(v is not None for _, v in s["points"]) for s in chart["series"])
            doc["charts"].append(chart)
    except MetricsUnavailable as exc:
        return {**doc, "available": False, "detail": str(exc), "charts": []}
    return doc


def class_series(found: list, step: float) -> dict[str, list[dict]]:
    """Per-step counts by status code -> {"requests": one req/s series per class, "errors": the failure ratio}."""
    times = sorted({t for series in found for t, _ in series.points})
    per_class = {name: dict.fromkeys(times, 0.0) for name in outcomes.CLASSES}
    for series in found:
        name = counts.class_of(str(series.labels.get("status_code", "")))
        for t, value in series.points:
            per_class[name][t] += value or 0.0
    requests = [{"name": outcomes.LEGENDS[name], "points": with_gaps([[t, round(v / step, 6)] for t, v in points.items()], step)}
                for name, points in per_class.items()]
    ratio = []
    for t in times:
        failed = sum(per_class[name][t] for name in outcomes.FAILURES)
        judged = failed + per_class[outcomes.OK][t]
        ratio.append([t, round(failed / judged, 6) if judged else None])
    return {"requests": requests, "errors": [{"name": "failure ratio", "points": with_gaps(ratio, step)}]}


def _exact_quantile(q: float, family: str, window: str, by: tuple[str, ...], rename: str = "") -> str:
    """A latency quantile over the window from bucket counts counted from zero (not rate()).

    rename="model" reads the grouping label requested_model from the family's `model` label instead.
    """
    source = tuple(rename if label == "requested_model" and rename else label for label in by)
    buckets = counts.count_expr(window, by=(*source, "le"), selector="", metric=f"{family}_bucket")
    if source != by:
        buckets = f'sum by ({", ".join((*by, "le"))}) (label_replace({buckets}, "requested_model", "$1", "{rename}", "(.*)"))'
    return f"histogram_quantile({q}, {buckets})"


TTFT_PROXY, TTFT_BACKEND = "litellm_llm_api_time_to_first_token_metric", "llm_backend_time_to_first_token_seconds"
LATENCY = "litellm_request_total_latency_metric"


def _figure_queries(window: str, by: tuple[str, ...]) -> dict[str, str]:
    """Latency, TTFT and output tokens/s over the window, grouped by `by` (() for the whole stack)."""
    per_second = promql_seconds(window)
    queries = {f"latency_p{int(q * 100)}_s": _exact_quantile(q, LATENCY, window, by) for q in (0.5, 0.95)}
    for q in (0.5, 0.95):
        # LiteLLM observes TTFT only for streamed requests; the embedded backend sees every one (by `model`).
        # `>= 0` drops a NaN quantile (no streamed request in the window), so the backend's figure is used.
        proxy = _exact_quantile(q, TTFT_PROXY, window, by)
        queries[f"ttft_p{int(q * 100)}_s"] = f"({proxy} >= 0) or {_exact_quantile(q, TTFT_BACKEND, window, by, 'model')}"
    tokens = counts.count_expr(window, by=by, selector="", metric="litellm_output_tokens_metric_total")
    queries["output_tokens_per_s"] = f"{tokens} / {per_second:g}"
    return queries


def _by_model(prom: PromAPI, window: str, found: list) -> dict[str, dict]:
    """Per requested model: requests, outcomes by class, status codes, latency, TTFT and output tokens/s."""
    models = {name: {**tally, "latency_p50_s": None, "latency_p95_s": None, "ttft_p50_s": None, "ttft_p95_s": None,
                     "output_tokens_per_s": None}
              for name, tally in counts.tally_by(found, "requested_model").items() if tally["requests"]}
    for key, expr in _figure_queries(window, ("requested_model",)).items():
        for sample in prom.query(expr):
            name = str(sample.labels.get("requested_model", ""))
            if name in models:
                models[name][key] = None if sample.value is None else round(sample.value, 6)
    return models


def summary(prom: PromAPI, window: str = "5m") -> dict:
    """Headline figures over the last window (None where there is no data yet), overall and per model.

    Request counts are exact and count a new series from zero (llmops/proxy/counts.py); metrics.request_rate
    is every real request per second, whatever its outcome.
    """
    specs = {spec["id"]: spec for spec in chart_specs(window)}
    wanted = {**_figure_queries(window, ()), "in_flight": specs["inflight"]["series"][0][1],
              "queued": specs["inflight"]["series"][2][1]}
    wanted.pop("ttft_p95_s")
    try:
        found = prom.query(counts.count_expr(window, by=("requested_model", "status_code")))
        values = {name: prom.scalar(expr) for name, expr in wanted.items()}
        models = _by_model(prom, window, found)
    except MetricsUnavailable as exc:
        return {"available": False, "detail": str(exc), "window": window, "metrics": {}, "requests": 0,
                "outcomes": outcomes.empty_counts(), "status_codes": {}, "models": {}}
    total = counts.tally(found)
    by_class, per_second = total["outcomes"], promql_seconds(window)
    failed = sum(by_class[name] for name in outcomes.FAILURES)
    judged = failed + by_class[outcomes.OK]
    values["request_rate"] = total["requests"] / per_second
    values["rate_limited_rate"] = by_class[outcomes.RATE_LIMITED] / per_second
    values["error_ratio"] = failed / judged if judged else None
    rounded = {k: (None if v is None else round(v, 6)) for k, v in values.items()}
    rounded["requests"] = total["requests"]
    return {"available": True, "detail": "", "window": window, "metrics": rounded, "requests": total["requests"],
            "outcomes": by_class, "status_codes": total["status_codes"], "models": models}


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
