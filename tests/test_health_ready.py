"""Readiness (make start, make status, make health-*) and the dashboard decide by the same rules."""
from __future__ import annotations

from llmops import health
from llmops.health import ReadyCheck
from llmops.stack import lifecycle
from llmops.stack.services import Service
from tests.support.fakes.dashboard import BACKEND, KEY, PROXY, FakeHTTP, FakeResponse, backend_routes, proxy_routes

PROXY_CHECKS = [ReadyCheck("/health/liveliness"), ReadyCheck("/v1/models", with_key=True, needs_models=True)]


def proxy_service() -> Service:
    host, port = PROXY.split("//")[1].split(":")
    return Service("litellm", host, int(port), checks=PROXY_CHECKS)


def with_liveliness(routes: dict) -> dict:
    return {**routes, f"GET {PROXY}/health/liveliness": FakeResponse(200, "I'm alive!")}


def test_ready_proxy_lists_its_models_and_sends_the_key():
    http = FakeHTTP(with_liveliness(proxy_routes(models=("smollm2:135m",))))
    result = health.probe_ready(http, PROXY, PROXY_CHECKS, KEY)
    assert result.ok and result.data["models"] == ["smollm2:135m"]
    assert http.calls[0]["url"].endswith("/health/liveliness") and "Authorization" not in http.calls[0]["headers"]
    assert http.calls[1]["headers"]["Authorization"] == f"Bearer {KEY}"


def test_readiness_reads_a_500_on_models_as_an_auth_error_like_the_dashboard():
    http = FakeHTTP(with_liveliness(proxy_routes()))
    ready = health.probe_ready(http, PROXY, PROXY_CHECKS, key="")
    dashboard = health.probe_proxy(FakeHTTP(proxy_routes()), PROXY, key="")
    assert (ready.status, ready.error, ready.detail) == (dashboard.status, dashboard.error, dashboard.detail)
    assert ready.error == "auth" and "auth misconfigured" in ready.detail


def test_first_failing_check_decides():
    http = FakeHTTP(proxy_routes())  # no /health/liveliness route: refused
    result = health.probe_ready(http, PROXY, PROXY_CHECKS, KEY)
    assert (result.status, result.error) == ("offline", "offline")
    assert len(http.calls) == 1


def test_backend_ready_on_api_version_and_not_on_a_body_that_is_not_json():
    assert health.probe_ready(FakeHTTP(backend_routes()), BACKEND, [ReadyCheck("/api/version")], "").detail == \
        "version 0.5.7-embedded"
    broken = FakeHTTP({f"GET {BACKEND}/api/version": FakeResponse(200, None, text="<html>")})
    result = health.probe_ready(broken, BACKEND, [ReadyCheck("/api/version")], "")
    assert not result.ok and "without JSON" in result.detail


def test_other_paths_need_a_200():
    http = FakeHTTP({f"GET {BACKEND}/healthz": FakeResponse(503, {"status": "starting"})})
    result = health.probe_ready(http, BACKEND, [ReadyCheck("/healthz")], "")
    assert (result.ok, result.detail) == (False, "/healthz answered HTTP 503")


def test_the_stack_words_a_ready_proxy_with_its_model_ids(monkeypatch):
    http = FakeHTTP(with_liveliness(proxy_routes(models=("smollm2:135m", "other"))))
    monkeypatch.setattr(lifecycle, "requests", http)
    answer = lifecycle.probe(proxy_service(), KEY)
    assert answer.ok and answer.detail == "2 model(s): smollm2:135m, other" and answer.latency_ms is not None
    failed = lifecycle.probe(proxy_service(), "")
    assert not failed.ok and "auth misconfigured" in failed.detail and failed.latency_ms is None


def test_litellm_health_detail_lists_the_unhealthy_deployments():
    routes = proxy_routes()
    routes[f"GET {PROXY}/health"] = FakeResponse(200, {"healthy_count": 0, "unhealthy_count": 1, "unhealthy_endpoints": [
        {"model": "ollama/smollm2:135m", "api_base": BACKEND, "error": "connection refused"}]})
    result = health.probe_proxy_detail(FakeHTTP(routes), PROXY, KEY)
    assert not result.ok
    assert result.data["unhealthy_endpoints"] == [
        {"model": "ollama/smollm2:135m", "api_base": BACKEND, "error": "connection refused"}]
