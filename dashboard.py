"""The dashboard on :3001: Flask app factory and routes (thin; the work is in llmops/)."""
from __future__ import annotations

import time

from flask import Flask, Response, jsonify, render_template, request, send_from_directory
from werkzeug.exceptions import HTTPException

DEFAULTS = {
    "START_MONITOR": True,  # tests turn the background probes off and drive the monitor themselves
    "PROBE_TIMEOUT": 3.0,  # per-probe timeout for backends and Prometheus (the proxy has its own 10 s)
    "PROMETHEUS_TIMEOUT": 3.0,
    "DETAIL_INTERVAL": 300.0,  # LiteLLM's /health runs a real generation per model: rarely
    "CACHE_SECONDS": 5.0,  # chart/summary/alert answers are reused this long
    "SETTINGS": None,  # an llmops.settings.Settings; default: settings.load()
    "HTTP_SESSION": None,  # anything with requests.Session's request()/get(); default: a new Session
    "CHECKS": None,  # a list of llmops.monitor.Check replacing the default probes
    "PROMETHEUS": None,  # an llmops.promapi.PromAPI (or fake) for charts and traffic
    "CLOCK": None,  # unix-seconds clock for timestamps and chart windows
    "SERVICE_PIDS": None,  # callable -> {service: pid or None}; default: the stack's supervisord
    "GPU_READER": None,  # an llmops.telemetry.gpu.GpuReader (tests pass a fake NVML); default: the process-wide one
    "HOST_CACHE_SECONDS": 2.0,  # /api/host is reused this long (short: CPU% needs fresh samples)
}


def _settings(config: dict):
    """Resolve settings, then apply any setting names present in the config dict (tests)."""
    from llmops import settings as settings_mod

    settings = config.get("SETTINGS") or settings_mod.load()
    for name, setting in settings_mod.BY_NAME.items():
        if name in config:
            value = config[name]
            settings.values[name] = setting.parse(value) if isinstance(value, str) else value
    return settings


def _routed_models(settings) -> dict[str, str]:
    """Model name -> mode from the proxy's config ({} when it does not parse: the proxy says why)."""
    from llmops import proxyconf
    from llmops.errors import ConfigError

    try:
        return proxyconf.routed_models(proxyconf.validate(settings.litellm_config_path))
    except ConfigError:
        return {}


class _TTLCache:
    """Remember answers for a few seconds so many open pages cost Prometheus one query set."""

    def __init__(self, seconds: float, clock):
        self.seconds, self.clock, self.items = seconds, clock, {}

    def get(self, key, compute):
        now = self.clock()
        hit = self.items.get(key)
        if hit and now - hit[0] < self.seconds:
            return hit[1]
        value = compute()
        self.items[key] = (now, value)
        return value


class _StatusFastPath:
    """WSGI wrapper serving GET /api/status from pre-serialised bytes, skipping Flask's per-request work.

    /api/status is the hot path (every open page and every script polls it); the body only changes when
    a probe finishes, so it is built once per change, with the same key redaction as every other answer.
    """

    def __init__(self, wsgi_app, body_fn, secret: str):
        self.wsgi_app, self.body_fn, self.secret = wsgi_app, body_fn, secret.encode()
        self._source, self._body = None, b""

    def body(self) -> bytes:
        source = self.body_fn()
        if source is not self._source:
            redacted = source.replace(self.secret, b"[redacted]") if self.secret else source
            self._source, self._body = source, redacted
        return self._body

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD")
        if environ.get("PATH_INFO") != "/api/status" or method not in ("GET", "HEAD"):
            return self.wsgi_app(environ, start_response)
        body = self.body()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                   ("Cache-Control", "no-store")]
        start_response("200 OK", headers)
        return [body] if method == "GET" else []


def create_app(config: dict | None = None) -> Flask:
    """Build the dashboard: settings, probes, monitor, exporter and routes. Starts probing unless told not to."""
    import requests

    from llmops import charts, exporter, modeltraffic
    from llmops.errors import StackError
    from llmops.hostview import HostView, safe_pids, supervisor_pids
    from llmops.monitor import Monitor, default_checks
    from llmops.promapi import PromAPI
    from llmops.telemetry.gpu import GpuCollector, default_reader
    from llmops.telemetry.host import ProcessCollector

    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    app.config.update(config or {})
    cfg = app.config
    settings = _settings(cfg)
    clock = cfg["CLOCK"] or time.time
    session = cfg["HTTP_SESSION"] or requests.Session()
    prom = cfg["PROMETHEUS"] or PromAPI(settings.prometheus_url, session, cfg["PROMETHEUS_TIMEOUT"])
    checks = cfg["CHECKS"] or default_checks(settings, session, prom, cfg["PROBE_TIMEOUT"], cfg["DETAIL_INTERVAL"])
    monitor = Monitor(checks, clock=clock)
    pids = safe_pids(cfg["SERVICE_PIDS"] or supervisor_pids(settings))
    gpu_reader = cfg["GPU_READER"] or default_reader()  # one reader for the app's life: NVML initialised once
    registry = exporter.make_registry(
        exporter.DashboardCollector(monitor.status, monitor.failure_counts, monitor.raw_latency),
        exporter.Guarded(GpuCollector(gpu_reader), "gpu"),
        exporter.Guarded(ProcessCollector(pids), "processes"),
    )
    host_view = HostView(pids, monitor.status, prom, gpu_reader)
    cache = _TTLCache(cfg["CACHE_SECONDS"], clock)
    host_cache = _TTLCache(cfg["HOST_CACHE_SECONDS"], clock)
    secret = str(settings.litellm_master_key or "")
    app.extensions["llmops"] = {"monitor": monitor, "settings": settings, "prometheus": prom}
    started = clock()
    routed = _routed_models(settings)

    def known_models() -> set[str]:
        """Routed by the config, listed by the proxy, or present on a backend: what the model filter accepts."""
        table = charts.models_table(monitor.status())
        return set(routed) | {row["name"] for row in table["models"]}

    @app.get("/")
    def index():
        return render_template("index.html", windows=list(charts.WINDOWS), probe_interval=settings.probe_interval)

    @app.get("/api/status")
    def api_status():
        return Response(monitor.status_json(), mimetype="application/json", headers={"Cache-Control": "no-store"})

    @app.get("/api/models")
    def api_models():
        return jsonify(charts.models_table(monitor.status()))

    @app.get("/api/models/traffic")
    def api_models_traffic():
        window = request.args.get("window", "1h")
        charts.window_params(window, 0)  # a bad window is a 400
        figures = cache.get(("models", window), lambda: modeltraffic.traffic(prom, window, charts.WINDOWS[window]))
        rows = modeltraffic.merged_rows(charts.models_table(monitor.status()), figures, routed)
        return jsonify(available=figures["available"], detail=figures["detail"], window=window, models=rows)

    @app.get("/api/metrics/summary")
    def api_summary():
        return jsonify(cache.get("summary", lambda: charts.summary(prom)))

    @app.get("/api/charts")
    def api_charts():
        window = request.args.get("window", "1h")
        charts.window_params(window, 0)  # validate before caching: a bad window is a 400
        model = modeltraffic.check_model(request.args.get("model"), known_models())
        embedders = [name for name, mode in routed.items() if mode == "embedding"]
        return jsonify(cache.get(("charts", window, model),
                                 lambda: charts.charts(prom, window, clock(), model, embedders)))

    @app.get("/api/alerts")
    def api_alerts():
        return jsonify(cache.get("alerts", lambda: charts.firing_alerts(prom)))

    @app.get("/api/host")
    def api_host():
        return jsonify(host_cache.get("host", host_view.document))

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", monitor_running=monitor.running, uptime_s=round(clock() - started, 3),
                       probe_updates=monitor.updates)

    @app.get("/metrics")
    def metrics():
        return Response(exporter.render(registry), mimetype="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/favicon.ico")
    def favicon():
        return send_from_directory(app.static_folder, "favicon.ico", mimetype="image/vnd.microsoft.icon")

    @app.errorhandler(Exception)
    def as_json(exc: Exception):
        """The one place errors become responses: JSON with a status code, never an HTML traceback."""
        if isinstance(exc, HTTPException):
            code, message = exc.code or 500, exc.description
        elif isinstance(exc, (charts.BadWindow, modeltraffic.BadModel)):
            code, message = 400, str(exc)
        elif isinstance(exc, StackError):
            code, message = 503, str(exc)
        else:
            app.logger.exception("unhandled error on %s", request.path)
            code, message = 500, f"internal error: {type(exc).__name__}"
        return jsonify(error=message, status=code), code

    @app.after_request
    def never_leak_the_key(response: Response):
        """Last line of defence: the proxy key must never leave the server."""
        if secret and not response.direct_passthrough and secret.encode() in response.get_data():
            app.logger.error("response to %s contained the proxy key; redacted", request.path)
            response.set_data(response.get_data().replace(secret.encode(), b"[redacted]"))
        return response

    app.wsgi_app = _StatusFastPath(app.wsgi_app, monitor.status_json, secret)
    if cfg["START_MONITOR"]:
        monitor.start()
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the dashboard under waitress on BIND_HOST:DASHBOARD_PORT (what the supervisor runs)."""
    import argparse
    import logging

    import waitress

    from llmops import settings as settings_mod

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", help="override BIND_HOST")
    parser.add_argument("--port", type=int, help="override DASHBOARD_PORT")
    parser.add_argument("--threads", type=int, default=4, help="waitress worker threads (4 measured best on 2 cores: bench/dashboard.py)")
    args = parser.parse_args(argv)
    settings = settings_mod.load()
    app = create_app({"SETTINGS": settings})
    host = args.host or str(settings.bind_host)
    port = args.port or int(settings.dashboard_port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    waitress.serve(app, host=host, port=port, threads=args.threads, ident="llmops-dashboard")


if __name__ == "__main__":
    main()
