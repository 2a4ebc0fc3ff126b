"""The dashboard on :3001: Flask app factory and routes (thin; the work is in the modules beside it)."""
from __future__ import annotations

import json
import secrets
import time

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..errors import StackError
from ..proxy.key import redact_bytes

DEFAULTS = {
    "START_MONITOR": True,  # tests turn the background probes off and drive the monitor themselves
    "PROBE_TIMEOUT": 3.0,  # per-probe timeout for backends and Prometheus (the proxy has its own 10 s)
    "PROMETHEUS_TIMEOUT": 3.0,
    "DETAIL_INTERVAL": 300.0,  # LiteLLM's /health runs a real generation per model: rarely
    "CACHE_SECONDS": 5.0,  # chart/summary/alert answers are reused this long
    "SETTINGS": None,  # an llmops.settings.Settings; default: settings.load()
    "HTTP_SESSION": None,  # anything with requests.Session's request()/get(); default: a new Session
    "CHECKS": None,  # a list of llmops.dashboard.monitor.Check replacing the default probes
    "PROMETHEUS": None,  # an llmops.dashboard.promapi.PromAPI (or fake) for charts and traffic
    "CLOCK": None,  # unix-seconds clock for timestamps and chart windows
    "SERVICE_PIDS": None,  # callable -> {service: pid or None}; default: the stack's supervisord
    "GPU_READER": None,  # an llmops.telemetry.gpu.GpuReader (tests pass a fake NVML); default: the process-wide one
    "HOST_CACHE_SECONDS": 2.0,  # /api/host is reused this long (short: CPU% needs fresh samples)
    "HOST_SAMPLE_SECONDS": 2.0,  # the stack's processes are sampled this often in the background (CPU%)
    "ALERT_BACKFILL": True,  # recover the alert history from Prometheus at the start (with START_MONITOR)
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
    from llmops.errors import ConfigError
    from llmops.proxy import config as litellm_config

    try:
        return litellm_config.routed_models(litellm_config.validate(settings.litellm_config_path))
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


def error_body(code: int, message: str, param: str | None = None) -> bytes:
    """The API's one error shape: {"error": message, "status": code} (and "param" when one is to blame)."""
    doc = {"error": message, "status": code} if param is None else {"error": message, "param": param, "status": code}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def error_response(exc: Exception) -> tuple[int, bytes]:
    """The status and body an exception is answered with: an HTTP error as itself, the toolkit's own errors
    with their class's http_status (llmops/errors.py), anything else as a 500 that names only its type."""
    if isinstance(exc, HTTPException):
        return exc.code or 500, error_body(exc.code or 500, exc.description)
    if isinstance(exc, StackError):
        return exc.http_status, error_body(exc.http_status, str(exc), getattr(exc, "param", None))
    return 500, error_body(500, f"internal error: {type(exc).__name__}")


class _StatusFastPath:
    """WSGI wrapper that serves /api/status itself, from pre-serialised bytes, skipping Flask's per-request work.

    /api/status is the hot path (every open page and every script polls it); the body only changes when
    a probe finishes, so it is built once per change, with the same key redaction as every other answer.
    Other methods get what Flask gave them when the route lived in the Blueprint: OPTIONS its Allow list,
    the rest a 405 in the API's error shape.
    """

    ALLOW = "OPTIONS, HEAD, GET"

    def __init__(self, wsgi_app, body_fn, secret: str):
        self.wsgi_app, self.body_fn, self.secret = wsgi_app, body_fn, secret
        self._source, self._body = None, b""

    def body(self) -> bytes:
        source = self.body_fn()
        if source is not self._source:
            redacted = redact_bytes(source, self.secret)
            self._source, self._body = source, redacted
        return self._body

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD")
        if environ.get("PATH_INFO") != "/api/status":
            return self.wsgi_app(environ, start_response)
        if method == "OPTIONS":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Allow", self.ALLOW),
                                      ("Content-Length", "0")])
            return []
        if method not in ("GET", "HEAD"):
            code, error = error_response(MethodNotAllowed())
            start_response(f"{code} METHOD NOT ALLOWED", [("Content-Type", "application/json"),
                                                          ("Content-Length", str(len(error)))])
            return [error]
        body = self.body()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                   ("Cache-Control", "no-store")]
        start_response("200 OK", headers)
        return [body] if method == "GET" else []


def create_app(config: dict | None = None) -> Flask:
    """Build the dashboard: settings, probes, monitor, exporter, then the routes Blueprint. Starts probing unless told not to."""
    import requests

    from llmops.alerts.backfill import Backfiller
    from llmops.dashboard.hostview import HostView, safe_pids, supervisor_pids
    from llmops.dashboard.monitor import Monitor, default_checks, redis_use
    from llmops.dashboard.promapi import PromAPI
    from llmops.settings import SECRETS as settings_secrets
    from llmops.telemetry.gpu import GpuCollector, default_reader
    from llmops.telemetry.host import ProcessCollector

    from . import alerthistory, exporter, loadtests, routes
    from . import requests as requestlog_routes

    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    app.config.update(config or {})
    cfg = app.config
    settings = _settings(cfg)
    clock = cfg["CLOCK"] or time.time
    session = cfg["HTTP_SESSION"] or requests.Session()
    prom = cfg["PROMETHEUS"] or PromAPI(settings.prometheus_url, session, cfg["PROMETHEUS_TIMEOUT"])
    checks = cfg["CHECKS"] or default_checks(settings, session, prom, cfg["PROBE_TIMEOUT"], cfg["DETAIL_INTERVAL"])
    monitor = Monitor(checks, clock=clock, redis_note=redis_use(settings)[1])
    pids = safe_pids(cfg["SERVICE_PIDS"] or supervisor_pids(settings))
    gpu_reader = cfg["GPU_READER"] or default_reader()  # one reader for the app's life: NVML initialised once
    registry = exporter.make_registry(
        exporter.DashboardCollector(monitor.status, monitor.failure_counts, monitor.raw_latency),
        exporter.Guarded(GpuCollector(gpu_reader), "gpu"),
        exporter.Guarded(ProcessCollector(pids), "processes"),
    )
    host_view = HostView(pids, monitor.status, prom, gpu_reader, sample_every=cfg["HOST_SAMPLE_SECONDS"])
    secret = settings.litellm_master_key
    backfiller = Backfiller(prom, settings.alert_history_path, settings.alert_history_days, clock)
    app.extensions["llmops"] = {
        "monitor": monitor, "settings": settings, "prometheus": prom, "clock": clock, "started": clock(),
        "cache": _TTLCache(cfg["CACHE_SECONDS"], clock), "host_cache": _TTLCache(cfg["HOST_CACHE_SECONDS"], clock),
        "host_view": host_view, "metrics_app": exporter.wsgi_app(registry), "routed": _routed_models(settings),
        "session": session, "csrf_token": secrets.token_urlsafe(24),
        "backfill": backfiller,
    }
    app.register_blueprint(routes.bp)  # the page, the JSON API, /healthz, /metrics
    app.register_blueprint(requestlog_routes.bp)  # the "Requests" section: docs/request-log.md
    app.register_blueprint(loadtests.bp)  # the "Load tests" section: docs/load-tests.md
    app.register_blueprint(alerthistory.bp)  # the alert receiver and the "Alert history" section: docs/health.md

    @app.errorhandler(Exception)
    def as_json(exc: Exception):
        """The one place errors become responses: JSON with a status code, never an HTML traceback."""
        if not isinstance(exc, HTTPException | StackError):
            app.logger.exception("unhandled error on %s", request.path)
        code, body = error_response(exc)
        return Response(body, status=code, mimetype="application/json")

    # Values under 6 characters are left out: replacing them would mangle answers (none is ever put in one).
    hidden = {name: str(settings.values[name]) for name in settings_secrets if len(str(settings.values.get(name) or "")) >= 6}

    @app.after_request
    def never_leak_a_secret(response: Response):
        """Last line of defence: no secret (the proxy key, the alert token, webhook URLs, the SMTP password) leaves."""
        if not hidden or response.direct_passthrough:
            return response
        body = response.get_data()
        leaked = sorted(name for name, value in hidden.items() if value.encode() in body)
        if leaked:
            app.logger.error("response to %s contained %s; redacted", request.path, ", ".join(leaked))  # names only
            for name in leaked:
                body = redact_bytes(body, hidden[name])
            response.set_data(body)
        return response

    app.wsgi_app = _StatusFastPath(app.wsgi_app, monitor.status_json, secret)
    if cfg["START_MONITOR"]:
        monitor.start()
        host_view.start()  # CPU% has its baseline before the first page asks
        if cfg["ALERT_BACKFILL"]:
            backfiller.start()  # what fired while the dashboard was down: llmops/alerts/backfill.py
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
    parser.add_argument("--threads", type=int, default=4, help="waitress worker threads (why 4: docs/benchmarks.md)")
    args = parser.parse_args(argv)
    settings = settings_mod.load()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app({"SETTINGS": settings})  # its threads log from the start
    host = args.host or settings.bind_host
    port = args.port or settings.dashboard_port
    waitress.serve(app, host=host, port=port, threads=args.threads, ident="llmops-dashboard")


if __name__ == "__main__":
    main()
