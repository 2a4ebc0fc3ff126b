"""Routed by the proxy vs present on the backends: `make status` and the dashboard name each mismatch."""
from __future__ import annotations

from llmops.dashboard import create_app
from llmops.stack import modelview
from llmops.telemetry.gpu import GpuReader
from tests.support.fakes.dashboard import (
    BACKEND,
    FakeHTTP,
    backend_routes,
    make_settings,
    prometheus_routes,
    proxy_routes,
)
from tests.support.fakes.gpu import FakeNVML

ROUTED = {"smollm2:135m": "chat", "gemma3:270m": "chat", "all-minilm:22m": "embedding"}


def test_compare_names_a_model_present_but_not_routed_and_one_routed_but_absent():
    rows = {r["name"]: r for r in modelview.compare(ROUTED, {
        "smollm2:135m": ["a:1"], "all-minilm:22m": ["a:1"], "qwen3:0.6b": ["a:1", "b:2"]})}
    assert rows["smollm2:135m"]["note"] is None and rows["smollm2:135m"]["mode"] == "chat"
    assert rows["gemma3:270m"]["note"] == "routed by the proxy, absent from the backend"
    assert rows["qwen3:0.6b"]["note"] == "present on the backend, not routed by the proxy"
    assert rows["qwen3:0.6b"]["present_on"] == ["a:1", "b:2"] and rows["qwen3:0.6b"]["routed"] is False
    assert list(rows)[:3] == list(ROUTED)  # the config's order first, then the extra ones


def test_latest_tag_is_the_same_model_and_unknown_sides_say_nothing():
    rows = modelview.compare({"llama3:latest": "chat"}, {"llama3": ["a:1"]})
    assert [(r["name"], r["note"]) for r in rows] == [("llama3:latest", None)]
    assert modelview.route_note(routed=True, present=False, backends_known=False) is None
    assert modelview.route_note(routed=False, present=True, routes_known=False) is None


def test_stack_models_reads_the_config_and_every_backend(tmp_path):
    s = make_settings(OLLAMA_PORT="18434")
    http = FakeHTTP(backend_routes(models=("smollm2:135m", "qwen3:0.6b")))
    view = modelview.stack_models(s, http)
    notes = {r["name"]: r["note"] for r in view["models"]}
    assert notes == {"smollm2:135m": None, "gemma3:270m": modelview.NOT_PRESENT,
                     "all-minilm:22m": modelview.NOT_PRESENT, "qwen3:0.6b": modelview.NOT_ROUTED}
    lines = modelview.status_lines(view)
    assert any(line.startswith("qwen3:0.6b") and "MISMATCH  present on the backend, not routed" in line
               for line in lines)
    assert any(line.startswith("smollm2:135m") and line.rstrip().endswith("ok") for line in lines)


def test_a_dead_backend_is_presence_unknown_not_a_mismatch():
    view = modelview.stack_models(make_settings(), FakeHTTP({}))
    assert all(r["note"] is None for r in view["models"]) and view["unreachable"] == ["127.0.0.1:18434"]
    assert "presence unknown" in modelview.status_lines(view)[-1]


def test_a_broken_config_is_named_not_raised(tmp_path):
    bad = tmp_path / "litellm_config.yaml"
    bad.write_text("model_list: [\n")
    view = modelview.stack_models(make_settings(LITELLM_CONFIG=str(bad)), FakeHTTP(backend_routes()))
    assert "YAML does not parse" in view["config_error"]
    assert [r["note"] for r in view["models"]] == [modelview.NOT_ROUTED]


def test_the_dashboard_models_rows_carry_the_note():
    routes = {**proxy_routes(models=("smollm2:135m", "gemma3:270m")),
              **backend_routes(models=("smollm2:135m", "qwen3:0.6b")), **prometheus_routes()}
    app = create_app({"SETTINGS": make_settings(), "HTTP_SESSION": FakeHTTP(routes), "START_MONITOR": False,
                      "CLOCK": lambda: 1_700_000_000.0, "CACHE_SECONDS": 0, "GPU_READER": GpuReader(FakeNVML())})
    app.extensions["llmops"]["monitor"].run_once()
    body = app.test_client().get("/api/models").get_json()
    notes = {r["name"]: r["note"] for r in body["models"]}
    assert notes == {"smollm2:135m": None, "gemma3:270m": modelview.NOT_PRESENT, "qwen3:0.6b": modelview.NOT_ROUTED}
    assert BACKEND.removeprefix("http://") in next(r for r in body["models"] if r["name"] == "qwen3:0.6b")["present_on"]
