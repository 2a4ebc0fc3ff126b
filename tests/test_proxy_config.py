"""litellm_config.yaml: validation names file and line; rendering spreads a model over the backends."""
import pytest
import yaml

from llmops import cli, settings
from llmops.errors import ConfigError
from llmops.proxy import config as proxyconf


def test_committed_config_is_valid_and_uses_the_expected_keys():
    data = proxyconf.validate()
    model = data["model_list"][0]
    assert model["model_name"] == "smollm2:135m"
    assert model["litellm_params"]["model"].startswith("ollama_chat/")
    assert model["litellm_params"]["api_base"] == "os.environ/OLLAMA_API_BASE"
    assert model["model_info"]["input_cost_per_token"] == 0.0
    assert data["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert data["litellm_settings"]["callbacks"] == ["prometheus", "llmops.proxy.plugins.requestlog.request_log",
                                                   "llmops.proxy.plugins.toolchoice.tool_choice"]
    assert data["litellm_settings"]["request_timeout"] == 120
    assert data["router_settings"]["num_retries"] == 1
    assert data["router_settings"]["routing_strategy"] == "simple-shuffle"


def assert_validate_names_file_and_line(tmp_path, text: str, line: int, words: str) -> None:
    """validate() of a config with `text` raises a ConfigError naming the file, the line and `words`."""
    path = tmp_path / "litellm_config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        proxyconf.validate(path)
    assert f"{path}:{line}:" in str(info.value) and words in str(info.value)


@pytest.mark.parametrize("text, line, words", [
    ("model_list:\n  - model_name: a\n    litellm_params: {model: ollama_chat/a\n", 4, "YAML does not parse"),
    ("model_list:\n  - model_name: a\n    litellm_params:\n      model: smollm2\n      api_base: x\n", 4, "names no provider"),
    ("model_list:\n  - model_name: a\n    litellm_params:\n      model: ollama_chat/a\n", 2, "no litellm_params.api_base"),
    ("litellm_settings: {}\n", 1, "model_list is missing"),
    ("model_list:\n  - model_name: a\n    litellm_params: {model: ollama/a, api_base: x}\n    model_info: [1]\n", 4,
     "model_info must be a mapping"),
    ("model_list:\n  - model_name: a\n    litellm_params: {model: ollama/a, api_base: x}\nrouter_setings: {}\n", 4,
     "unknown section 'router_setings'"),
])
def test_bad_config_names_file_and_line(tmp_path, text, line, words):
    assert_validate_names_file_and_line(tmp_path, text, line, words)


def test_cli_check_exits_non_zero_with_the_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("model_list: [\n")
    assert cli.main(["proxy", "check", str(path)]) == 2
    assert f"{path}:" in capsys.readouterr().err


def test_render_makes_one_deployment_per_backend_with_limits(tmp_path):
    s = settings.load(env_file=tmp_path / "x", environ={
        "BACKENDS": "3", "OLLAMA_PORT": "21000", "LITELLM_MAX_PARALLEL": "2", "LITELLM_RPM": "60"})
    data = proxyconf.render(s)
    bases = [m["litellm_params"]["api_base"] for m in data["model_list"] if m["model_name"] == "smollm2:135m"]
    assert bases == ["http://127.0.0.1:21000", "http://127.0.0.1:21001", "http://127.0.0.1:21002"]
    assert len(data["model_list"]) == 3 * len(proxyconf.routed_models(data))
    assert all(m["litellm_params"]["max_parallel_requests"] == 2 for m in data["model_list"])
    assert all(m["litellm_params"]["rpm"] == 60 for m in data["model_list"])
    assert data["router_settings"]["enable_pre_call_checks"] is True
    yaml.safe_dump(data)  # renders to YAML


def test_rendered_config_never_contains_the_key(tmp_path):
    s = settings.load(env_file=tmp_path / "x", environ={
        "LITELLM_MASTER_KEY": "sk-secret-test-key", "LLMOPS_STATE_DIR": str(tmp_path / "state")})
    path = proxyconf.write_rendered(s)
    assert "sk-secret-test-key" not in path.read_text()


def test_timeout_and_retries_overrides_go_where_litellm_reads_them(tmp_path):
    s = settings.load(env_file=tmp_path / "x", environ={"LITELLM_TIMEOUT": "3", "LITELLM_NUM_RETRIES": "2"})
    data = proxyconf.render(s)
    assert data["litellm_settings"]["request_timeout"] == 3 and data["router_settings"]["timeout"] == 3
    assert data["litellm_settings"]["num_retries"] == 2 and data["router_settings"]["num_retries"] == 2
    default = proxyconf.render(settings.load(env_file=tmp_path / "x", environ={}))
    assert default["router_settings"]["timeout"] == 120 and default["router_settings"]["num_retries"] == 1


def test_health_checks_run_often_only_when_there_are_several_backends(tmp_path):
    one = proxyconf.render(settings.load(env_file=tmp_path / "x", environ={}))
    assert one["general_settings"]["health_check_interval"] == 300
    assert one["router_settings"]["enable_health_check_routing"] is True
    three = proxyconf.render(settings.load(env_file=tmp_path / "x", environ={"BACKENDS": "3"}))
    assert three["general_settings"]["health_check_interval"] == proxyconf.MULTI_BACKEND_HEALTH_CHECK_INTERVAL
    chosen = proxyconf.render(settings.load(env_file=tmp_path / "x", environ={
        "BACKENDS": "3", "LITELLM_HEALTH_CHECK_INTERVAL": "60"}))
    assert chosen["general_settings"]["health_check_interval"] == 60


def test_supervisor_config_escapes_percent_in_paths_and_keeps_files_private(tmp_path):
    from llmops.render.supervisord_config import render_config
    from llmops.stack.services import Service

    s = settings.load(env_file=tmp_path / "x", environ={"LLMOPS_STATE_DIR": str(tmp_path / "a%b"),
                                                         "LLMOPS_LOG_DIR": str(tmp_path / "logs")})
    text = render_config(s, [Service("dashboard", "127.0.0.1", 1, command=["python", "x%y.py"])])
    assert "a%%b/supervisor.sock" in text and "x%%y.py" in text and "umask=077" in text


def test_local_models_get_cost_map_facts_and_explicit_ones_are_kept(tmp_path):
    path = tmp_path / "litellm_config.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: a\n    litellm_params: {model: ollama/a, api_base: os.environ/OLLAMA_API_BASE}\n"
        "  - model_name: b\n    litellm_params: {model: ollama/b, api_base: http://127.0.0.1:1}\n"
        "    model_info: {input_cost_per_token: 0.5, mode: embedding}\n"
        "  - model_name: c\n    litellm_params: {model: openai/c, api_base: http://127.0.0.1:2}\n")
    data = proxyconf.render(settings.load(env_file=tmp_path / "x", environ={}), source=path)
    info = {m["model_name"]: m.get("model_info") for m in data["model_list"]}
    assert info["a"] == {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "litellm_provider": "ollama",
                         "health_check_max_tokens": 1}  # the queue's one-token background health checks
    assert info["b"]["input_cost_per_token"] == 0.5 and info["b"]["mode"] == "embedding"
    assert info["b"]["litellm_provider"] == "ollama" and info["b"]["output_cost_per_token"] == 0.0
    assert info["c"] is None  # a model priced by LiteLLM's own cost map is left alone


def test_the_queue_is_the_last_callback_with_one_slot_pool_per_backend_and_model(tmp_path):
    environ = {"BACKENDS": "3", "OLLAMA_PORT": "21000"}
    s = settings.load(env_file=tmp_path / "x", environ=environ)
    data = proxyconf.render(s)
    assert data["litellm_settings"]["callbacks"][-1] == proxyconf.QUEUE_CALLBACK
    assert data["general_settings"]["cancel_on_disconnect"] is True
    groups = proxyconf.queue_groups(data)
    assert groups["smollm2:135m"] == [f"http://127.0.0.1:{21000 + i}|smollm2:135m" for i in range(3)]
    assert "all-minilm:22m" not in groups  # embeddings pass without a slot
    queue = proxyconf.queue_settings(s, data)
    assert (queue["max"], queue["timeout"], queue["ageing"], queue["default_priority"]) == (512, 60.0, 1.0, 10)
    chat = [m for m in data["model_list"] if m["model_name"] == "smollm2:135m"]
    assert all(m["model_info"]["health_check_max_tokens"] == 1 for m in chat)


def test_queue_disabled_leaves_litellm_as_it_is(tmp_path):
    s = settings.load(env_file=tmp_path / "x", environ={"QUEUE_ENABLED": "false"})
    data = proxyconf.render(s)
    assert proxyconf.QUEUE_CALLBACK not in data["litellm_settings"]["callbacks"]
    assert "cancel_on_disconnect" not in data.get("general_settings", {})
    assert all("health_check_max_tokens" not in (m.get("model_info") or {}) for m in data["model_list"])


# Run in a child so the test process does not import LiteLLM (seconds, and global state).
ROUTER_LOOKUP = r"""
import json, sys
import litellm
data = json.load(sys.stdin)
router = litellm.Router(model_list=data["model_list"])
for deployment in router.model_list:
    info = router.get_router_model_info(deployment=deployment, received_model_name=deployment["model_name"])
    provider = deployment["litellm_params"]["model"].split("/", 1)[0]
    assert info["input_cost_per_token"] == 0.0 and info["litellm_provider"] == provider, info
    assert info["mode"] == deployment["model_info"]["mode"], info
    router.get_router_model_info(deployment=deployment, received_model_name=deployment["model_name"])
cache = litellm.get_model_info.cache_info()
print(json.dumps({"hits": cache.hits, "deployments": len(router.model_list)}))
"""


def test_the_real_router_answers_model_info_for_the_committed_model_from_its_cache(tmp_path):
    """LiteLLM looks each request's deployment up in its cost map twice; that lookup must succeed (a miss
    raises, is never cached, and rescans the 4,255-entry map every request: bench/proxy_overhead.py)."""
    import json
    import os
    import subprocess
    import sys

    data = proxyconf.render(settings.load(env_file=tmp_path / "x", environ={"BACKENDS": "2"}))
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False", LITELLM_LOG="ERROR")
    out = subprocess.run([sys.executable, "-c", ROUTER_LOOKUP], input=json.dumps(data), capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["deployments"] == 2 * len(proxyconf.routed_models(data)) and result["hits"] >= 2


def test_committed_config_routes_two_chat_models_and_one_embedding_model_with_fallbacks(tmp_path):
    data = proxyconf.render(settings.load(env_file=tmp_path / "x", environ={"BACKENDS": "2"}))
    assert proxyconf.routed_models(data) == {"smollm2:135m": "chat", "gemma3:270m": "chat", "all-minilm:22m": "embedding"}
    by_name: dict[str, list[dict]] = {}
    for deployment in data["model_list"]:
        by_name.setdefault(deployment["model_name"], []).append(deployment)
    assert all(len(d) == 2 for d in by_name.values())  # one deployment per backend, every model
    for deployment in by_name["all-minilm:22m"]:
        assert deployment["litellm_params"]["model"] == "ollama/all-minilm:22m"  # posts /api/embed
        assert deployment["model_info"]["mode"] == "embedding"
        assert deployment["model_info"]["input_cost_per_token"] == 0.0
        assert deployment["model_info"]["litellm_provider"] == "ollama"
    for name in ("smollm2:135m", "gemma3:270m"):
        assert all(d["litellm_params"]["model"] == f"ollama_chat/{name}" for d in by_name[name])
    fallbacks = {k: v for item in data["router_settings"]["fallbacks"] for k, v in item.items()}
    assert fallbacks == {"smollm2:135m": ["gemma3:270m"], "gemma3:270m": ["smollm2:135m"]}
    assert data["router_settings"]["context_window_fallbacks"] == [{"smollm2:135m": ["gemma3:270m"]}]


@pytest.mark.parametrize("text, line, words", [
    ("model_list:\n  - model_name: e\n    litellm_params: {model: ollama_chat/e, api_base: x}\n"
     "    model_info:\n      mode: embedding\n", 5, "no ollama_chat/ embeddings route"),
    ("model_list:\n  - model_name: a\n    litellm_params: {model: ollama_chat/a, api_base: x}\n"
     "router_settings:\n  fallbacks:\n    - a: [gemma]\n", 6, "names 'gemma', which no model_list entry routes"),
])
def test_bad_embedding_route_or_fallback_names_file_and_line(tmp_path, text, line, words):
    assert_validate_names_file_and_line(tmp_path, text, line, words)
