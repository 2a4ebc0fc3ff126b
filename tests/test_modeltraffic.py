"""The dashboard model by model: exact per-model counts (checked by promtool), rows, the model filter, the API."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from llmops.dashboard import charts, create_app, modeltraffic
from llmops.dashboard.promapi import Sample
from llmops.telemetry.gpu import GpuReader
from tests.support.fakes.dashboard import (
    FakeHTTP,
    backend_routes,
    healthy_stack,
    make_settings,
    prometheus_routes,
    proxy_routes,
)
from tests.support.fakes.gpu import FakeNVML
from tests.support.fakes.prom import FakeProm

REAL = 'route="/v1/chat/completions", user_agent="app/1"'


def test_window_counts_are_exact_for_new_old_and_reset_series(tmp_path):
    """increase() would miss a new series' first requests; the count query must not (promtool evaluates it)."""
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.fail("promtool not found (make setup installs Prometheus)")
    series = "litellm_proxy_total_requests_metric_total"
    case = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                # Old series: 10 before the 10-minute window (7m-17m), 7 more inside it.
                {"series": f'{series}{{requested_model="a", status_code="200", {REAL}}}', "values": "10x10 11+1x6"},
                # Born inside the window (at 14m) with 3 already counted: all 3 are in the window.
                {"series": f'{series}{{requested_model="b", status_code="500", {REAL}}}', "values": "_x14 3 3 3"},
                # Reset by a proxy restart inside the window: counted from the restart (the 2 before it are lost).
                {"series": f'{series}{{requested_model="a", status_code="429", {REAL}}}', "values": "50x10 51 52 1 2 2 2 2"},
                # The canary and /metrics scrapes are not traffic.
                {"series": f'{series}{{requested_model="a", status_code="200", route="/v1/chat/completions", '
                           'user_agent="llmops-canary/0.1"}', "values": "0+1x17"},
                {"series": f'{series}{{requested_model="a", status_code="200", route="/metrics/", '
                           'user_agent="Prometheus/2.42.0"}', "values": "0+1x17"},
            ],
            "promql_expr_test": [{
                "expr": modeltraffic.queries(600)["counts"],
                "eval_time": "17m",
                "exp_samples": [
                    {"labels": '{requested_model="a", status_code="200"}', "value": 7},
                    {"labels": '{requested_model="b", status_code="500"}', "value": 3},
                    {"labels": '{requested_model="a", status_code="429"}', "value": 2},
                ],
            }],
        }],
    }
    path = tmp_path / "counts.test.yml"
    path.write_text(yaml.safe_dump(case, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def prom_answering(answers: dict[str, list[Sample]]) -> FakeProm:
    """A FakeProm answering each figure's query (by the figure's name) and failing on any other query."""
    return FakeProm({q: answers.get(name, []) for name, q in modeltraffic.queries(3600).items()}, strict=True)


def test_traffic_rows_count_each_class_per_model():
    s = lambda v, **labels: Sample(labels, v)  # noqa: E731
    prom = prom_answering({
        "counts": [s(5, requested_model="smollm2:135m", status_code="200"),
                   s(2, requested_model="smollm2:135m", status_code="500"),
                   s(1, requested_model="smollm2:135m", status_code="429"),
                   s(1, requested_model="smollm2:135m", status_code="408"),
                   s(3, requested_model="smollm2:135m", status_code="400"),
                   s(4, requested_model="all-minilm:22m", status_code="200")],
        "embedding_requests": [s(4, requested_model="all-minilm:22m")],
        "p50_s": [s(0.2, requested_model="smollm2:135m"), s(None, requested_model="all-minilm:22m")],
        "output_tokens_per_s": [s(12.5, requested_model="smollm2:135m")],
        "fallbacks": [s(2, requested_model="smollm2:135m")],
    })
    doc = modeltraffic.traffic(prom, "1h", 3600)
    chat, embed = doc["models"]["smollm2:135m"], doc["models"]["all-minilm:22m"]
    assert chat["requests"] == 12
    assert chat["outcomes"] == {"ok": 5, "client_error": 3, "rate_limited": 1, "timeout": 1, "server_error": 2}
    assert chat["p50_s"] == 0.2 and chat["output_tokens_per_s"] == 12.5 and chat["embedding_requests"] == 0
    assert chat["fallbacks"] == 2 and embed["fallbacks"] == 0
    assert embed["requests"] == embed["embedding_requests"] == 4 and embed["p50_s"] is None
    assert embed["embeddings_per_s"] == pytest.approx(4 / 3600, abs=1e-6)


def test_rows_join_the_models_table_and_name_the_kind():
    table = {"models": [{"name": "smollm2:135m", "configured": True, "present_on": ["b:1"], "loaded_on": [], "note": None}]}
    figures = {"models": {"all-minilm:22m": {"requests": 1, "embedding_requests": 1}}}
    rows = modeltraffic.merged_rows(table, figures, {"smollm2:135m": "chat"})
    assert [(r["name"], r["kind"]) for r in rows] == [("smollm2:135m", "chat"), ("all-minilm:22m", "embedding")]
    assert rows[0]["traffic"] is None and rows[1]["configured"] is False


def test_the_filter_limits_every_litellm_and_backend_series_to_the_model():
    specs = modeltraffic.model_specs(charts.chart_specs("60s"), "gemma3:270m", "60s", ["all-minilm:22m"])
    exprs = [e for spec in specs if spec["id"] not in modeltraffic.SHARED for _, e in series_of(spec)]
    shared = next(spec for spec in specs if spec["id"] == "inflight")
    assert shared["title"].endswith("(all models)") and "gemma3" not in str(shared["series"])
    for expr in exprs:
        for name in ("litellm_proxy_total_requests_metric_total{", "litellm_request_total_latency_metric_bucket{",
                     "litellm_output_tokens_metric_total{"):
            for part in expr.split(name)[1:]:
                assert 'requested_model="gemma3:270m"' in part.split("}")[0], expr
        for part in expr.split("llm_backend_")[1:]:
            assert 'model="gemma3:270m"' in part.split("}")[0], expr
    ids = ids_of(specs)
    assert "embeddings (any outcome)" in ids["requests"]
    assert {"embeddings p50", "embeddings p95"} <= set(ids["latency"])


def test_unfiltered_specs_only_add_the_embedding_series():
    plain = charts.chart_specs("60s")
    specs = modeltraffic.model_specs(plain, None, "60s", [])
    assert [s["series"] if isinstance(s["series"], str) else s["series"][: len(p["series"])]
            for s, p in zip(specs, plain, strict=True)] == [p["series"] for p in plain]
    assert ids_of(specs)["latency"] == ids_of(plain)["latency"]  # no embedding model routed: no embedding latency


def series_of(spec):
    """A spec's (name, PromQL) pairs; the by-class charts are drawn from one count in charts(), plus extras."""
    return spec.get("extra", []) if isinstance(spec["series"], str) else spec["series"]


def ids_of(specs):
    return {s["id"]: [n for n, _ in series_of(s)] for s in specs}


def _app(routes):
    app = create_app({"SETTINGS": make_settings(), "HTTP_SESSION": FakeHTTP(routes), "START_MONITOR": False,
                      "CLOCK": lambda: 1_700_000_000.0, "CACHE_SECONDS": 0, "GPU_READER": GpuReader(FakeNVML())})
    app.extensions["llmops"]["monitor"].run_once()
    return app.test_client()


def test_an_unknown_model_or_window_is_a_400_in_the_apis_shape():
    client = _app(healthy_stack())
    bad = client.get("/api/charts?window=15m&model=nope:1b")
    assert bad.status_code == 400 and "not one the stack knows" in bad.get_json()["error"]
    assert "smollm2:135m" in bad.get_json()["error"]
    assert client.get("/api/models/traffic?window=2d").status_code == 400
    good = client.get("/api/charts?window=15m&model=all-minilm:22m")  # routed by the config
    assert good.status_code == 200 and good.get_json()["model"] == "all-minilm:22m"
    assert client.get("/api/charts?window=15m&model=all").get_json()["model"] == "all"


def test_models_traffic_answers_rows_and_says_when_metrics_are_down():
    client = _app({**proxy_routes(), **backend_routes(), **prometheus_routes()})
    body = client.get("/api/models/traffic?window=15m").get_json()
    assert body["available"] is True and body["window"] == "15m"
    assert {r["name"] for r in body["models"]} >= {"smollm2:135m"}
    down = _app({**proxy_routes(), **backend_routes()}).get("/api/models/traffic?window=15m")
    assert down.status_code == 200 and down.get_json()["available"] is False
    assert "unreachable" in down.get_json()["detail"]
