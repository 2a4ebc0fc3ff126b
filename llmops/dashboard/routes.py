"""The dashboard's main Blueprint: the page, the JSON API, /healthz and /metrics, over the state create_app built.

GET /api/status is not here: app.py serves it before Flask (the hot path every page and script polls)."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template, request, send_from_directory

from . import charts, modeltraffic, queueview
from .state import app_state

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index():
    state = app_state()
    return render_template("index.html", windows=list(charts.WINDOWS), probe_interval=state["settings"].probe_interval,
                           csrf_token=state["csrf_token"])


@bp.get("/api/models")
def api_models():
    return jsonify(charts.models_table(app_state()["monitor"].status()))


@bp.get("/api/models/traffic")
def api_models_traffic():
    state = app_state()
    window = request.args.get("window", "1h")
    charts.window_params(window, 0)  # a bad window is a 400
    figures = state["cache"].get(("models", window),
                                 lambda: modeltraffic.traffic(state["prometheus"], window, charts.WINDOWS[window]))
    rows = modeltraffic.merged_rows(charts.models_table(state["monitor"].status()), figures, state["routed"])
    return jsonify(available=figures["available"], detail=figures["detail"], window=window, models=rows)


def _known_models(state: dict) -> set[str]:
    """Routed by the config, listed by the proxy, or present on a backend: what the model filter accepts."""
    table = charts.models_table(state["monitor"].status())
    return set(state["routed"]) | {row["name"] for row in table["models"]}


def _cached(key, compute):
    """An answer from Prometheus, reused for CACHE_SECONDS: many open pages cost it one query set."""
    return jsonify(app_state()["cache"].get(key, compute))


@bp.get("/api/metrics/summary")
def api_summary():
    return _cached("summary", lambda: charts.summary(app_state()["prometheus"]))


@bp.get("/api/charts")
def api_charts():
    window = request.args.get("window", "1h")
    charts.window_params(window, 0)  # validate before caching: a bad window is a 400
    state = app_state()
    model = modeltraffic.check_model(request.args.get("model"), _known_models(state))
    embedders = [name for name, mode in state["routed"].items() if mode == "embedding"]
    return _cached(("charts", window, model),
                   lambda: charts.charts(state["prometheus"], window, state["clock"](), model, embedders))


@bp.get("/api/queue")
def api_queue():
    window = request.args.get("window", "1h")
    charts.window_params(window, 0)  # a bad window is a 400
    return _cached(("queue", window),
                   lambda: queueview.queue(app_state()["prometheus"], window, charts.WINDOWS[window]))


@bp.get("/api/alerts")
def api_alerts():
    return _cached("alerts", lambda: charts.firing_alerts(app_state()["prometheus"]))


@bp.get("/api/host")
def api_host():
    state = app_state()
    return jsonify(state["host_cache"].get("host", state["host_view"].document))


@bp.get("/healthz")
def healthz():
    state = app_state()
    monitor = state["monitor"]
    return jsonify(status="ok", monitor_running=monitor.running, uptime_s=round(state["clock"]() - state["started"], 3),
                   probe_updates=monitor.updates)


@bp.get("/metrics")
def metrics():
    return Response.from_app(app_state()["metrics_app"], request.environ)  # Flask's after_request still guards it


@bp.get("/favicon.ico")
def favicon():
    return send_from_directory(current_app.static_folder, "favicon.ico", mimetype="image/vnd.microsoft.icon")
