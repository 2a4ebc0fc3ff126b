"""The Flask app built from the factory with a fake stack: the /api/status contract, no key leaks, no 5xx."""
from __future__ import annotations

import os
import re

import pytest

from llmops import errors
from llmops.dashboard import create_app
from llmops.telemetry.gpu import GpuReader
from tests.support.fakes.dashboard import (
    ALERTMANAGER,
    BACKEND,
    FIRING_ALERTS,
    KEY,
    PROM,
    PROXY,
    FakeHTTP,
    healthy_stack,
    make_settings,
    without,
)
from tests.support.fakes.gpu import FakeNVML, gpu

NOW = 1_700_000_000.0
ROUTES = ["/", "/api/status", "/api/models", "/api/metrics/summary", "/api/charts?window=15m",
          "/api/charts?window=24h", "/api/queue?window=1h", "/api/alerts", "/api/host", "/healthz", "/metrics", "/favicon.ico",
          "/static/app.js", "/static/style.css"]
FIRING = FIRING_ALERTS


def build(routes: dict, rounds: int = 2, **config):
    """An app over a fake stack with the monitor off; the checks run `rounds` times by hand."""
    http = FakeHTTP(routes)
    app = create_app({"SETTINGS": make_settings(), "HTTP_SESSION": http, "START_MONITOR": False,
                      "CLOCK": lambda: NOW, "CACHE_SECONDS": 0, "GPU_READER": GpuReader(FakeNVML()),
                      "SERVICE_PIDS": lambda: {"dashboard": os.getpid(), "litellm": None}, **config})
    for _ in range(rounds):
        app.extensions["llmops"]["monitor"].run_once()
    return app, http


@pytest.fixture
def client():
    app, _ = build(healthy_stack(alerts=FIRING))
    return app.test_client()


def test_status_follows_the_contract(client):
    body = client.get("/api/status").get_json()
    assert set(body) == {"overall", "reason", "checked_at", "components"}
    assert body["overall"] in ("healthy", "degraded", "down") and isinstance(body["reason"], str)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", body["checked_at"])
    assert set(body["components"]) == {"proxy", "ollama", "prometheus", "traffic", "canary", "alertmanager", "redis"}
    for name, component in body["components"].items():
        assert component["status"] in ("healthy", "unhealthy", "offline"), name
        assert isinstance(component["detail"], str), name
        assert component["latency_ms"] is None or isinstance(component["latency_ms"], float), name
    assert body["components"]["proxy"]["models"] == ["smollm2:135m"]
    assert body["overall"] == "healthy"


def test_status_is_not_cached_by_browsers(client):
    assert client.get("/api/status").headers["Cache-Control"] == "no-store"


def test_status_is_served_before_flask_with_every_method_answered_as_before():
    """The WSGI fast path is the one handler of /api/status: no Flask route serves it (the old one in routes.py
    was never reached), and each method gets what the dashboard answered before that route went."""
    app, _ = build(healthy_stack(alerts=FIRING))
    assert [r.rule for r in app.url_map.iter_rules() if r.rule == "/api/status"] == []
    client = app.test_client()
    monitor = app.extensions["llmops"]["monitor"]
    got = client.get("/api/status")
    assert got.status_code == 200 and got.get_data() == monitor.status_json()
    assert (got.headers["Content-Type"], got.headers["Cache-Control"]) == ("application/json", "no-store")
    head = client.head("/api/status")
    assert head.status_code == 200 and head.get_data() == b""
    assert head.headers["Content-Length"] == str(len(monitor.status_json()))
    options = client.options("/api/status")
    assert (options.status_code, options.headers["Allow"], options.get_data()) == (200, "OPTIONS, HEAD, GET", b"")
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        answer = client.open("/api/status", method=method)
        assert answer.status_code == 405 and answer.headers["Content-Type"] == "application/json", method
        assert answer.get_data() == b'{"error":"The method is not allowed for the requested URL.","status":405}\n'
    # Any other path still goes to Flask.
    assert client.get("/api/status/").status_code == 404 and client.get("/healthz").status_code == 200


@pytest.mark.parametrize("exc, code, body", [
    (errors.BadWindow("window '7d' is not one of 15m"), 400, {"error": "window '7d' is not one of 15m", "status": 400}),
    (errors.BadQuery("limit", "0 is outside 1-500"), 400,
     {"error": "limit: 0 is outside 1-500", "param": "limit", "status": 400}),
    (errors.MetricsUnavailable("Prometheus down"), 503, {"error": "Prometheus down", "status": 503}),
    (errors.ConfigError(".env line 3: bad"), 503, {"error": ".env line 3: bad", "status": 503}),
    (KeyError("secret detail"), 500, {"error": "internal error: KeyError", "status": 500}),
])
def test_one_handler_answers_each_error_with_its_class_status(exc, code, body):
    app, _ = build(healthy_stack())

    def boom():
        raise exc
    app.add_url_rule("/boom", "boom", boom)
    answer = app.test_client().get("/boom")
    assert (answer.status_code, answer.get_json()) == (code, body)


def test_every_error_class_names_its_http_status():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert {c.__name__: c.http_status for c in classes} == {
        "StackError": 503, "ConfigError": 503, "PortInUseError": 503, "ServiceError": 503, "MetricsUnavailable": 503,
        "PreflightError": 503, "BadInput": 400, "BadWindow": 400, "BadModel": 400, "BadQuery": 400,
        "Unauthorized": 401, "Forbidden": 403}


def test_models_join_proxy_backend_and_loaded(client):
    body = client.get("/api/models").get_json()
    (row,) = body["models"]
    assert row["name"] == "smollm2:135m" and row["configured"] is True
    assert row["present_on"] == ["127.0.0.1:18434"]
    assert row["loaded_on"][0]["size"] == 210000000 and row["loaded_on"][0]["expires_at"]


def test_charts_hold_every_series_over_the_window(client):
    body = client.get("/api/charts?window=15m").get_json()
    assert body["available"] is True
    assert [c["id"] for c in body["charts"]] == ["requests", "errors", "latency", "ttft", "tokens", "inflight"]
    points = body["charts"][0]["series"][0]["points"]
    assert points[0][0] == pytest.approx(NOW - 900) and len(points) > 50


def test_charts_refuse_unknown_window_with_json_400(client):
    response = client.get("/api/charts?window=7d")
    assert response.status_code == 400
    assert "15m" in response.get_json()["error"]


def test_queue_refuses_unknown_window_with_json_400_and_answers_a_known_one(client):
    response = client.get("/api/queue?window=7d")
    assert response.status_code == 400 and "15m" in response.get_json()["error"]
    body = client.get("/api/queue?window=1h").get_json()
    assert set(body) >= {"available", "enabled", "priorities", "backends", "rejected"}


def test_alerts_list_firing_only(client):
    body = client.get("/api/alerts").get_json()
    assert [a["name"] for a in body["firing"]] == ["BackendDown"] and body["pending"] == 1


def test_summary_has_figures(client):
    body = client.get("/api/metrics/summary").get_json()
    assert body["available"] is True and body["metrics"]["request_rate"] is not None
    for key in ("request_rate", "rate_limited_rate", "error_ratio", "latency_p50_s", "latency_p95_s", "ttft_p50_s",
                "output_tokens_per_s", "in_flight", "queued"):
        assert key in body["metrics"], key  # the keys scripts already read stay


def test_summary_counts_each_class_overall_and_per_model():
    app, _ = build(healthy_stack(traffic={"200": 10, "400": 3, "429": 2, "500": 1, "408": 2}))
    body = app.test_client().get("/api/metrics/summary").get_json()
    expected = {"ok": 10, "client_error": 3, "rate_limited": 2, "server_error": 1, "timeout": 2}
    assert body["requests"] == body["metrics"]["requests"] == 18 and body["outcomes"] == expected
    assert body["metrics"]["request_rate"] == pytest.approx(18 / 300)
    assert body["metrics"]["error_ratio"] == pytest.approx(3 / 13, abs=1e-6)  # server errors and timeouts of those judged
    model = body["models"]["smollm2:135m"]
    assert model["requests"] == 18 and model["outcomes"] == expected
    for key in ("latency_p50_s", "latency_p95_s", "ttft_p50_s", "ttft_p95_s", "output_tokens_per_s"):
        assert model[key] == pytest.approx(0.25), key


def test_requests_chart_has_one_series_per_class():
    app, _ = build(healthy_stack(traffic={"200": 30, "400": 15}))
    body = app.test_client().get("/api/charts?window=15m").get_json()
    requests_chart, errors_chart = body["charts"][0], body["charts"][1]
    assert [s["name"] for s in requests_chart["series"]][:5] == [
        "ok (2xx)", "client error (4xx)", "rate limited (429)", "server error (5xx)", "timeout"]
    assert [s["name"] for s in requests_chart["series"]][5:] == ["embeddings (any outcome)"]  # its own kind
    values = {s["name"]: {v for _, v in s["points"]} for s in requests_chart["series"]}
    assert values["ok (2xx)"] == {2.0} and values["client error (4xx)"] == {1.0}  # per 15 s step
    assert values["timeout"] == {0.0}
    assert {v for _, v in errors_chart["series"][0]["points"]} == {0.0}  # client errors are not failures


def test_metrics_exports_the_names_the_alert_rules_use(client):
    text = client.get("/metrics").get_data(as_text=True)
    for line in [
        'llmops_component_up{component="proxy"} 1.0',
        'llmops_component_up{component="ollama"} 1.0',
        'llmops_component_up{component="canary"} 1.0',
        "llmops_overall_status 0.0",
        "llmops_proxy_models 1.0",
        'llmops_backend_up{backend="127.0.0.1:18434"} 1.0',
        'llmops_backend_models{backend="127.0.0.1:18434"} 1.0',
        'llmops_backend_loaded_models{backend="127.0.0.1:18434"} 1.0',
        'llmops_backend_loaded_model_bytes{backend="127.0.0.1:18434",model="smollm2:135m"} 2.1e+08',
        'llmops_backend_loaded_model_vram_bytes{backend="127.0.0.1:18434",model="smollm2:135m"} 0.0',
        'llmops_probe_failures_total{component="proxy"} 0.0',
    ]:
        assert line in text, line
    assert re.search(r'llmops_probe_latency_seconds\{component="ollama"\} \d', text)


def test_metrics_hold_gpu_and_service_families():
    app, _ = build(healthy_stack(), GPU_READER=GpuReader(FakeNVML(gpus=[gpu()])))
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert "llmops_gpu_count 1.0" in text
    assert 'llmops_gpu_memory_used_bytes{gpu="0",name="NVIDIA GeForce RTX 4090"}' in text
    assert re.search(r'llmops_service_resident_memory_bytes\{service="dashboard"\} \d', text)


def test_host_view_is_on_the_page_and_in_the_api(client):
    assert 'id="host-summary"' in client.get("/").get_data(as_text=True)
    body = client.get("/api/host").get_json()
    assert body["gpu"]["status"] == "no GPU found" and body["processes"]["litellm"]["status"] == "stopped"


def test_metrics_after_backend_goes_down():
    app, _ = build(without(healthy_stack(), BACKEND))
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'llmops_backend_up{backend="127.0.0.1:18434"} 0.0' in text
    assert 'llmops_component_up{component="ollama"} 0.0' in text
    assert "llmops_overall_status 1.0" in text
    assert 'llmops_probe_failures_total{component="ollama"} 2.0' in text


def test_no_route_answers_5xx_when_everything_is_down():
    app, _ = build({})
    client = app.test_client()
    for route in ROUTES:
        assert client.get(route).status_code < 500, route
    status = client.get("/api/status").get_json()
    assert status["overall"] == "down"
    charts = client.get("/api/charts?window=1h").get_json()
    assert charts["available"] is False and charts["detail"].startswith("metrics unavailable")
    assert client.get("/api/alerts").get_json()["available"] is False


def test_prometheus_down_keeps_health_and_says_metrics_unavailable():
    app, _ = build(without(healthy_stack(), PROM))
    client = app.test_client()
    assert client.get("/api/status").get_json()["components"]["proxy"]["status"] == "healthy"
    assert client.get("/api/metrics/summary").get_json()["available"] is False


def test_alertmanager_down_degrades_the_stack_because_alerts_cannot_be_delivered():
    app, _ = build(without(healthy_stack(), ALERTMANAGER))
    client = app.test_client()
    status = client.get("/api/status").get_json()
    component = status["components"]["alertmanager"]
    assert (component["status"], component["enabled"]) == ("offline", True)
    assert status["overall"] == "degraded" and "alerts cannot be delivered" in status["reason"]
    assert status["components"]["proxy"]["status"] == "healthy"  # the rest is judged as before
    assert 'llmops_component_up{component="alertmanager"} 0.0' in client.get("/metrics").get_data(as_text=True)


def test_alertmanager_up_is_healthy_with_its_version():
    app, _ = build(healthy_stack())
    component = app.test_client().get("/api/status").get_json()["components"]["alertmanager"]
    assert (component["status"], component["version"]) == ("healthy", "0.25.0")


def test_alertmanager_turned_off_is_neither_probed_nor_judged():
    app, http = build(without(healthy_stack(), ALERTMANAGER), ALERTMANAGER_ENABLED="false")
    client = app.test_client()
    status = client.get("/api/status").get_json()
    assert status["overall"] == "healthy", status["reason"]
    assert status["components"]["alertmanager"]["enabled"] is False
    assert not [c for c in http.calls if c["url"].startswith(ALERTMANAGER)]
    assert 'component_up{component="alertmanager"}' not in client.get("/metrics").get_data(as_text=True)


def test_the_key_appears_in_no_response():
    for routes in (healthy_stack(alerts=FIRING), {}, without(healthy_stack(), PROXY)):
        app, http = build(routes)
        assert any(KEY in str(c.get("headers")) for c in http.calls)  # the key is used...
        client = app.test_client()
        for route in ROUTES + ["/nope"]:
            response = client.get(route)
            assert KEY.encode() not in response.get_data(), route  # ...but never sent back
            assert KEY not in str(response.headers), route


def test_key_in_a_probe_detail_is_redacted():
    from llmops.dashboard.monitor import Check
    from llmops.health import ProbeResult

    leaky = Check("proxy", lambda: ProbeResult("unhealthy", 1.0, f"echoed {KEY}", "http"), 5, "proxy")
    app, _ = build({}, CHECKS=[leaky])
    body = app.test_client().get("/api/status").get_data(as_text=True)
    assert KEY not in body and "[redacted]" in body


def test_unknown_route_is_json_404(client):
    response = client.get("/nope")
    assert response.status_code == 404 and response.get_json()["status"] == 404


def test_page_has_cards_container_and_vendored_chart_library(client):
    html = client.get("/").get_data(as_text=True)
    assert 'id="cards"' in html and "/static/vendor/chartjs/chart.umd.min.js" in html
    assert "http://" not in html.replace("http://127.0.0.1", "") and "https://" not in html  # no CDN
    assert client.get("/static/vendor/chartjs/chart.umd.min.js").status_code == 200


def test_healthz_and_favicon(client):
    assert client.get("/healthz").get_json()["status"] == "ok"
    favicon = client.get("/favicon.ico")
    assert favicon.status_code == 200 and favicon.data[:4] == b"\x00\x00\x01\x00"


def test_factory_starts_no_thread_and_no_probe_when_told_not_to():
    http = FakeHTTP(healthy_stack())
    app = create_app({"SETTINGS": make_settings(), "HTTP_SESSION": http, "START_MONITOR": False})
    assert http.calls == [] and not app.extensions["llmops"]["monitor"].running


def test_setting_names_in_config_override_settings():
    app = create_app({"SETTINGS": make_settings(), "HTTP_SESSION": FakeHTTP({}), "START_MONITOR": False,
                      "CANARY_INTERVAL": "0", "PROBE_INTERVAL": 2})
    monitor = app.extensions["llmops"]["monitor"]
    assert "canary" not in monitor.checks and monitor.checks["proxy"].interval == 2


def test_background_monitor_sees_backend_go_down_and_come_back():
    routes = healthy_stack()
    http = FakeHTTP(routes)
    app = create_app({"SETTINGS": make_settings(PROBE_INTERVAL="0.05", CANARY_INTERVAL="0"), "HTTP_SESSION": http,
                      "CACHE_SECONDS": 0})
    monitor = app.extensions["llmops"]["monitor"]
    ollama = lambda status: status["components"]["ollama"]["status"]  # noqa: E731
    try:
        assert monitor.wait_for(lambda s: ollama(s) == "healthy", timeout=10)
        backend_routes_saved = {k: routes.pop(k) for k in list(routes) if BACKEND in k}
        http.routes = routes
        assert monitor.wait_for(lambda s: ollama(s) == "offline", timeout=10)
        assert app.test_client().get("/api/status").get_json()["overall"] == "degraded"
        http.routes = {**routes, **backend_routes_saved}
        assert monitor.wait_for(lambda s: ollama(s) == "healthy", timeout=10)
    finally:
        monitor.stop()


def test_metrics_leave_out_what_cannot_be_judged():
    app, _ = build(without(healthy_stack(), PROM), CANARY_INTERVAL="0")
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'llmops_component_up{component="prometheus"} 0.0' in text
    assert 'component_up{component="traffic"}' not in text  # no metrics to judge traffic by
    assert 'component_up{component="canary"}' not in text  # turned off


def test_chart_lines_break_where_samples_are_missing():
    from llmops.dashboard.charts import with_gaps

    points = [(0.0, 1.0), (15.0, 2.0), (30.0, 3.0), (300.0, 4.0), (315.0, 5.0)]
    assert with_gaps(points, 15.0) == [[0.0, 1.0], [15.0, 2.0], [30.0, 3.0], [45.0, None], [300.0, 4.0], [315.0, 5.0]]
    assert with_gaps([], 15.0) == []
