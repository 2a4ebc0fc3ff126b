"""Fakes for the dashboard's tests: an HTTP session answering like the stack, and settings without .env."""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import requests

from llmops import settings as settings_mod

KEY = "sk-test-secret-4f9c2e"
PROXY, BACKEND, BACKEND2, PROM = "http://127.0.0.1:18000", "http://127.0.0.1:18434", "http://127.0.0.1:18435", "http://127.0.0.1:19090"
ALERTMANAGER = "http://127.0.0.1:19093"


FIRING_ALERTS = [
    {"labels": {"alertname": "BackendDown", "severity": "critical", "backend": "127.0.0.1:18434"},
     "annotations": {"summary": "backend down"}, "state": "firing", "activeAt": "2023-11-14T22:00:00Z"},
    {"labels": {"alertname": "Slow", "severity": "warning"}, "annotations": {}, "state": "pending"},
]


class FakeResponse:
    """Just enough of requests.Response."""

    def __init__(self, status_code: int = 200, body=None, text: str | None = None):
        self.status_code = status_code
        self._body = body
        self.text = text if text is not None else json.dumps(body)

    def json(self):
        if self._body is None:
            raise ValueError("no JSON")
        return self._body


class FakeHTTP:
    """A requests.Session stand-in: routes map 'METHOD url' (no query) to a response, exception or callable."""

    def __init__(self, routes: dict | None = None):
        self.routes = dict(routes or {})
        self.calls: list[dict] = []

    def request(self, method, url, timeout=None, **kwargs):
        self.calls.append({"method": method, "url": url, "timeout": timeout, **kwargs})
        parts = urlsplit(url)
        key = f"{method} {parts.scheme}://{parts.netloc}{parts.path}"
        answer = self.routes.get(key)
        if answer is None:
            raise requests.ConnectionError(f"connection refused: {url}")
        if callable(answer) and not isinstance(answer, FakeResponse):
            answer = answer(method, url, kwargs)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def get(self, url, params=None, timeout=None, **kwargs):
        return self.request("GET", url, timeout=timeout, params=params, **kwargs)

    def post(self, url, timeout=None, **kwargs):
        return self.request("POST", url, timeout=timeout, **kwargs)


def make_settings(**overrides) -> settings_mod.Settings:
    """Settings from defaults plus overrides, ignoring the real .env and environment; an alert history of its own."""
    environ = {
        "ALERT_HISTORY_PATH": str(Path(tempfile.mkdtemp(prefix="llmops-alerts-")) / "alerts.db"),
        "LITELLM_MASTER_KEY": KEY,
        "LITELLM_PORT": "18000",
        "OLLAMA_PORT": "18434",
        "PROMETHEUS_PORT": "19090",
        "ALERTMANAGER_PORT": "19093",
        "CANARY_INTERVAL": "60",
        **{k: str(v) for k, v in overrides.items()},
    }
    return settings_mod.load(env_file=Path("/nonexistent/.env"), environ=environ)


def proxy_routes(models=("smollm2:135m",), status=200) -> dict:
    def models_answer(method, url, kwargs):
        if kwargs.get("headers", {}).get("Authorization") != f"Bearer {KEY}":
            return FakeResponse(500, {"error": {"message": "No module named 'prisma'"}})
        return FakeResponse(status, {"data": [{"id": m, "object": "model"} for m in models], "object": "list"})

    return {
        f"GET {PROXY}/v1/models": models_answer,
        f"POST {PROXY}/v1/chat/completions": FakeResponse(200, {"choices": [{"message": {"content": "p"}}]}),
        f"POST {PROXY}/v1/embeddings": FakeResponse(200, {"object": "list", "data": [
            {"object": "embedding", "index": 0, "embedding": [0.1] * 384}]}),
        f"GET {PROXY}/health/readiness": FakeResponse(200, {"status": "healthy", "litellm_version": "1.108.7"}),
        f"GET {PROXY}/health": FakeResponse(200, {"healthy_count": 1, "unhealthy_count": 0}),
    }


def backend_routes(base=BACKEND, models=("smollm2:135m",), loaded=True) -> dict:
    tags = [{"name": m, "model": m, "size": 98362432, "modified_at": "2025-01-01T00:00:00Z"} for m in models]
    ps = [{"name": m, "model": m, "size": 210000000, "size_vram": 0, "expires_at": "2030-01-01T00:05:00Z"}
          for m in (models if loaded else ())]
    return {
        f"GET {base}/api/version": FakeResponse(200, {"version": "0.5.7-embedded"}),
        f"GET {base}/api/tags": FakeResponse(200, {"models": tags}),
        f"GET {base}/api/ps": FakeResponse(200, {"models": ps}),
    }


# node_exporter's figures as the fake Prometheus answers them (an 8-core, 16 GiB host).
NODE_FIGURES = {
    "1 - avg(rate(node_cpu_seconds_total": 0.42,
    "count(node_cpu_seconds_total": 8,
    "node_memory_MemTotal_bytes": 16 * 2**30,
    "node_memory_MemAvailable_bytes": 6 * 2**30,
    "node_load15": 0.75,  # before node_load1, which is its prefix
    "node_load1": 1.5,
    "node_load5": 1.25,
    "node_filesystem_size_bytes": 100 * 2**30,
    "node_filesystem_avail_bytes": 40 * 2**30,
}


QUEUE_BACKEND = "http://127.0.0.1:11434"
# The proxy queue's series (llmops/dashboard/queueview.py's queries), by the first name in a query that matches.
QUEUE_FIGURES = (
    ("llmops_queue_wait_seconds_count", [({"priority": "0"}, 10), ({"priority": "9"}, 40)]),
    ("histogram_quantile(0.5, sum by (priority, le) (rate(llmops_queue_wait",
     [({"priority": "0"}, 0.004), ({"priority": "9"}, 2.5)]),
    ("histogram_quantile(0.95, sum by (priority, le) (rate(llmops_queue_wait",
     [({"priority": "0"}, 0.02), ({"priority": "9"}, 6.0)]),
    ("llmops_queue_waiting", [({"priority": "9"}, 3)]),
    ("llmops_queue_busy_slots", [({"backend": QUEUE_BACKEND, "model": "smollm2:135m"}, 1)]),
    ("llmops_queue_slots", [({"backend": QUEUE_BACKEND, "model": "smollm2:135m"}, 1)]),
    ("llmops_queue_rejected_total", [({"reason": "timeout"}, 2)]),
    ("llmops_queue_health_checks_total", [({"backend": QUEUE_BACKEND, "model": "smollm2:135m"}, 12)]),
)


def traffic_by_status(traffic) -> dict[str, int]:
    """{status_code: requests}: a dict as is, or (total, ok, rate limited) with the rest as HTTP 500."""
    if isinstance(traffic, dict):
        return {str(k): v for k, v in traffic.items()}
    total, ok, limited = traffic
    return {"200": ok, "429": limited, "500": total - ok - limited}


def prometheus_answer(now: float = 1_700_000_000.0, alerts=None, traffic=(95, 90, 2), model="smollm2:135m"):
    """A callable answering Prometheus's API: a sine wave for range queries, traffic counts for instant ones.

    Request-count queries (the exact counts of llmops/proxy/counts.py) get one sample per status code of
    `traffic`, labelled with `model` when the query groups by requested_model.
    """
    by_status = traffic_by_status(traffic)

    def labels(expr: str, code: str | None = None) -> dict:
        found = {"requested_model": model} if "requested_model" in expr else {}
        return {**found, "status_code": code} if code is not None else found

    def counting(expr: str) -> bool:
        return "litellm_proxy_total_requests_metric_total" in expr and "sum_over_time" in expr

    def answer(method, url, kwargs):
        path = urlsplit(url).path
        params = kwargs.get("params") or {}
        if path == "/api/v1/query_range":
            start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
            count = int((end - start) // step) + 1
            shift = sum(map(ord, params["query"])) % 7  # distinct curves per query
            values = [[start + i * step, str(1.5 + math.sin(i / 6.0 + shift))] for i in range(count)]
            result = [{"metric": {}, "values": values}]
            if counting(params["query"]):
                result = [{"metric": labels(params["query"], code),
                           "values": [[start + i * step, str(n)] for i in range(count)]} for code, n in by_status.items()]
            return FakeResponse(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})
        if path == "/api/v1/query":
            expr = params["query"]
            queue = next((rows for name, rows in QUEUE_FIGURES if name in expr), None)
            if queue is not None:
                result = [{"metric": m, "value": [now, str(v)]} for m, v in queue]
            elif counting(expr):
                result = [{"metric": labels(expr, code), "value": [now, str(n)]} for code, n in by_status.items()]
            else:
                value = next((v for k, v in NODE_FIGURES.items() if expr.startswith(k)), 0.25)
                result = [{"metric": labels(expr), "value": [now, str(value)]}]
            return FakeResponse(200, {"status": "success", "data": {"resultType": "vector", "result": result}})
        if path == "/api/v1/alerts":
            return FakeResponse(200, {"status": "success", "data": {"alerts": list(alerts or [])}})
        return FakeResponse(404, {"status": "error", "error": "not found"})

    return answer


def prometheus_routes(**kwargs) -> dict:
    answer = prometheus_answer(**kwargs)
    return {
        f"GET {PROM}/-/ready": FakeResponse(200, text="Prometheus Server is Ready."),
        f"GET {PROM}/api/v1/status/buildinfo": FakeResponse(200, {"status": "success", "data": {"version": "2.42.0"}}),
        f"GET {PROM}/api/v1/query": answer,
        f"GET {PROM}/api/v1/query_range": answer,
        f"GET {PROM}/api/v1/alerts": answer,
    }


def alertmanager_routes() -> dict:
    """Alertmanager 0.25 as it answers: /-/ready's plain OK, /api/v2/status's versionInfo and cluster."""
    return {
        f"GET {ALERTMANAGER}/-/ready": FakeResponse(200, text="OK"),
        f"GET {ALERTMANAGER}/api/v2/status": FakeResponse(200, {
            "cluster": {"status": "disabled", "peers": []},
            "versionInfo": {"version": "0.25.0", "branch": "debian/sid", "goVersion": "go1.19.8"},
            "uptime": "2023-11-14T22:00:00.000Z", "config": {"original": "route: ..."}}),
    }


def healthy_stack(**prom_kwargs) -> dict:
    """Routes of a whole healthy stack as `make start` runs it: proxy, one backend, Prometheus, Alertmanager."""
    return {**proxy_routes(), **backend_routes(), **prometheus_routes(**prom_kwargs), **alertmanager_routes()}


def without(routes: dict, base: str) -> dict:
    """The routes with every endpoint of one service removed (it then refuses connections)."""
    return {k: v for k, v in routes.items() if base not in k}
