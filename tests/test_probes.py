"""Probes and the Prometheus client against a fake HTTP session (no network)."""
from __future__ import annotations

import pytest
import requests

from llmops import health as probes
from llmops.dashboard.promapi import MetricsUnavailable, PromAPI
from tests.support.fakes.dashboard import (
    BACKEND,
    KEY,
    PROM,
    PROXY,
    FakeHTTP,
    FakeResponse,
    backend_routes,
    prometheus_routes,
    proxy_routes,
)


def test_proxy_healthy_when_models_listed_and_sends_the_key():
    http = FakeHTTP(proxy_routes(models=("smollm2:135m", "other")))
    result = probes.probe_proxy(http, PROXY, KEY)
    assert result.status == "healthy"
    assert result.data["models"] == ["smollm2:135m", "other"]
    assert http.calls[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert http.calls[0]["timeout"] == 10.0
    assert result.latency_ms is not None and result.latency_ms >= 0


def test_proxy_without_key_gets_500_reported_as_auth():
    result = probes.probe_proxy(FakeHTTP(proxy_routes()), PROXY, key="")
    assert (result.status, result.error) == ("unhealthy", "auth")
    assert "auth misconfigured" in result.detail and "500" in result.detail


def test_proxy_wrong_key_400_no_connected_db_is_auth():
    http = FakeHTTP({f"GET {PROXY}/v1/models": FakeResponse(400, {"error": {"message": "No connected db."}})})
    result = probes.probe_proxy(http, PROXY, KEY)
    assert result.error == "auth" and "400" in result.detail


def test_proxy_with_no_models_is_unhealthy():
    result = probes.probe_proxy(FakeHTTP(proxy_routes(models=())), PROXY, KEY)
    assert (result.status, result.error) == ("unhealthy", "empty")


def test_proxy_timeout_is_unhealthy_timeout():
    http = FakeHTTP({f"GET {PROXY}/v1/models": requests.ReadTimeout("slow")})
    result = probes.probe_proxy(http, PROXY, KEY)
    assert (result.status, result.error) == ("unhealthy", "timeout")
    assert "10 s" in result.detail


def test_proxy_refused_is_offline():
    result = probes.probe_proxy(FakeHTTP({}), PROXY, KEY)
    assert (result.status, result.error) == ("offline", "offline")


def test_proxy_non_json_answer_is_unhealthy_not_an_exception():
    http = FakeHTTP({f"GET {PROXY}/v1/models": FakeResponse(200, None, text="<html>")})
    result = probes.probe_proxy(http, PROXY, KEY)
    assert result.status == "unhealthy" and "without JSON" in result.detail


def test_backend_reports_version_present_and_loaded_models():
    result = probes.probe_backend(FakeHTTP(backend_routes()), BACKEND)
    assert result.status == "healthy"
    assert result.data["version"] == "0.5.7-embedded"
    assert [m["name"] for m in result.data["present"]] == ["smollm2:135m"]
    assert result.data["loaded"][0] == {"name": "smollm2:135m", "size": 210000000, "size_vram": 0,
                                        "expires_at": "2030-01-01T00:05:00Z"}


def test_backend_asks_version_tags_and_ps():
    http = FakeHTTP(backend_routes())
    probes.probe_backend(http, BACKEND)
    assert [c["url"] for c in http.calls] == [f"{BACKEND}/api/version", f"{BACKEND}/api/tags", f"{BACKEND}/api/ps"]


def test_backend_down_is_offline_and_empty_backend_unhealthy():
    assert probes.probe_backend(FakeHTTP({}), BACKEND).status == "offline"
    empty = probes.probe_backend(FakeHTTP(backend_routes(models=())), BACKEND)
    assert (empty.status, empty.error) == ("unhealthy", "empty")


def test_prometheus_ready_with_version_and_down_offline():
    assert probes.probe_prometheus(FakeHTTP(prometheus_routes()), PROM).data["version"] == "2.42.0"
    assert probes.probe_prometheus(FakeHTTP({}), PROM).status == "offline"


def test_traffic_counts_429_as_rate_limited_not_failure():
    # 100 requests: 80 ok, 15 rate limited, 5 server errors -> 80 / 85 succeeded.
    prom = PromAPI(PROM, FakeHTTP(prometheus_routes(traffic=(100, 80, 15))))
    result = probes.probe_traffic(prom)
    assert result.status == "healthy"
    assert result.data["success_ratio"] == pytest.approx(80 / 85, abs=1e-4)
    assert result.data["rate_limited"] == 15 and result.data["failed"] == 5
    assert result.data["outcomes"] == {"ok": 80, "client_error": 0, "rate_limited": 15, "server_error": 5, "timeout": 0}
    assert result.detail == ("20 of 100 requests failed in the last 5m: 15 rate limited (HTTP 429), "
                             "5 server errors (HTTP 500)")


def test_traffic_low_success_ratio_is_unhealthy():
    prom = PromAPI(PROM, FakeHTTP(prometheus_routes(traffic=(20, 10, 0))))
    result = probes.probe_traffic(prom)
    assert result.status == "unhealthy"
    assert result.detail == "10 of 20 requests failed in the last 5m: 10 server errors (HTTP 500)"


def test_traffic_client_errors_are_named_but_not_unhealthy():
    # The fresh stack: 15 ok and 3 rejected with HTTP 400 (unknown model, unsupported feature).
    prom = PromAPI(PROM, FakeHTTP(prometheus_routes(traffic={"200": 15, "400": 3})))
    result = probes.probe_traffic(prom)
    assert result.status == "healthy" and result.data["requests"] == 18
    assert result.detail == "3 of 18 requests failed in the last 5m: 3 client errors (HTTP 400)"


def test_traffic_timeouts_count_against_health():
    prom = PromAPI(PROM, FakeHTTP(prometheus_routes(traffic={"200": 4, "408": 6})))
    result = probes.probe_traffic(prom)
    assert result.status == "unhealthy" and result.data["outcomes"]["timeout"] == 6
    assert result.detail == "6 of 10 requests failed in the last 5m: 6 timeouts (HTTP 408)"


def test_traffic_all_ok_and_no_traffic_are_healthy():
    ok = probes.probe_traffic(PromAPI(PROM, FakeHTTP(prometheus_routes(traffic={"200": 7}))))
    assert (ok.status, ok.detail) == ("healthy", "all 7 real requests succeeded in the last 5m")
    idle = probes.probe_traffic(PromAPI(PROM, FakeHTTP(prometheus_routes(traffic={}))))
    assert (idle.status, idle.detail, idle.data["requests"]) == ("healthy", "no real requests in the last 5m", 0)


def test_traffic_query_excludes_canary_and_metrics_scrapes():
    http = FakeHTTP(prometheus_routes())
    probes.probe_traffic(PromAPI(PROM, http))
    queries = [c["params"]["query"] for c in http.calls]
    assert queries and all('user_agent!~"llmops-canary.*"' in q and "/metrics" in q for q in queries)


def test_traffic_without_prometheus_is_metrics_unavailable():
    result = probes.probe_traffic(PromAPI(PROM, FakeHTTP({})))
    assert (result.status, result.error) == ("offline", "unavailable")
    assert "metrics unavailable" in result.detail


def test_canary_posts_one_token_completion_at_the_most_urgent_priority_with_its_user_agent():
    http = FakeHTTP(proxy_routes())
    result = probes.probe_canary(http, PROXY, KEY, "smollm2:135m")
    call = http.calls[0]
    assert result.status == "healthy"
    assert call["json"]["max_tokens"] == 1 and call["json"]["model"] == "smollm2:135m"
    assert call["json"]["priority"] == 0  # the proxy's queue serves it first
    assert call["headers"]["User-Agent"] == "llmops-canary/0.1"


def test_canary_backend_down_500_is_unhealthy():
    http = FakeHTTP({f"POST {PROXY}/v1/chat/completions": FakeResponse(500, {"error": "backend"})})
    result = probes.probe_canary(http, PROXY, KEY, "smollm2:135m")
    assert (result.status, result.error) == ("unhealthy", "http") and "500" in result.detail


def test_proxy_detail_reads_litellm_health_and_version():
    result = probes.probe_proxy_detail(FakeHTTP(proxy_routes()), PROXY, KEY)
    assert result.data == {"version": "1.108.7", "healthy_count": 1, "unhealthy_count": 0}


def test_promapi_range_turns_nan_into_none():
    body = {"status": "success", "data": {"resultType": "matrix",
                                          "result": [{"metric": {"a": "b"}, "values": [[1, "NaN"], [2, "0.5"]]}]}}
    prom = PromAPI(PROM, FakeHTTP({f"GET {PROM}/api/v1/query_range": FakeResponse(200, body)}))
    (series,) = prom.query_range("x", 0, 2, 1)
    assert series.labels == {"a": "b"} and series.points == [(1.0, None), (2.0, 0.5)]


def test_promapi_errors_are_metrics_unavailable():
    with pytest.raises(MetricsUnavailable, match="unreachable"):
        PromAPI(PROM, FakeHTTP({})).query("up")
    bad = FakeHTTP({f"GET {PROM}/api/v1/query": FakeResponse(400, {"status": "error", "error": "parse error"})})
    with pytest.raises(MetricsUnavailable, match="parse error"):
        PromAPI(PROM, bad).query("up{")
