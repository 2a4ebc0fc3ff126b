"""The canary covers each model kind: a chat completion and an embeddings request, each on its own check."""
from __future__ import annotations

from llmops import health as probes
from llmops import settings
from llmops.dashboard.monitor import EMBEDDING_CANARY, Check, Monitor, default_checks, embedding_model
from llmops.health import HEALTHY, UNHEALTHY, ProbeResult
from tests.support.fakes.dashboard import KEY, PROXY, FakeHTTP, FakeResponse, proxy_routes

EMBED = "all-minilm:22m"
VECTOR = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1] * 384}]}


def test_embedding_canary_posts_one_input_with_its_user_agent():
    http = FakeHTTP({f"POST {PROXY}/v1/embeddings": FakeResponse(200, VECTOR)})
    result = probes.probe_embedding_canary(http, PROXY, KEY, EMBED)
    call = http.calls[0]
    assert result.status == HEALTHY and result.data == {"model": EMBED, "kind": "embedding", "dims": 384}
    assert call["json"] == {"model": EMBED, "input": "ping"}
    assert call["headers"]["User-Agent"] == probes.CANARY_USER_AGENT
    assert call["headers"]["Authorization"] == f"Bearer {KEY}"


def test_a_broken_embedding_route_is_unhealthy_and_says_so():
    # What LiteLLM answers when the embedding model is routed with ollama_chat/ (no embeddings there).
    http = FakeHTTP({f"POST {PROXY}/v1/embeddings": FakeResponse(400, {"error": {"message": "Unmapped LLM provider"}})})
    result = probes.probe_embedding_canary(http, PROXY, KEY, EMBED)
    assert (result.status, result.error) == (UNHEALTHY, "http")
    assert f"embeddings for {EMBED} answered HTTP 400" == result.detail
    empty = probes.probe_embedding_canary(
        FakeHTTP({f"POST {PROXY}/v1/embeddings": FakeResponse(200, {"data": []})}), PROXY, KEY, EMBED)
    assert (empty.status, empty.error) == (UNHEALTHY, "empty")
    offline = probes.probe_embedding_canary(FakeHTTP({}), PROXY, KEY, EMBED)
    assert offline.status == "offline"


def test_the_committed_config_gives_the_embedding_canary_its_model(tmp_path):
    s = settings.load(env_file=tmp_path / "x", environ={"CANARY_INTERVAL": "30"})
    assert embedding_model(s) == EMBED
    http = FakeHTTP({**proxy_routes(), f"POST {PROXY}/v1/embeddings": FakeResponse(200, VECTOR)})
    checks = {c.name: c for c in default_checks(s, http, prom=None)}
    assert checks["canary"].interval == checks[EMBEDDING_CANARY].interval == 30.0
    assert checks[EMBEDDING_CANARY].component == "canary" and checks[EMBEDDING_CANARY].model == EMBED


def test_no_embedding_canary_when_the_config_routes_no_embedding_model(tmp_path):
    config = tmp_path / "litellm_config.yaml"
    config.write_text("model_list:\n  - model_name: a\n    litellm_params: {model: ollama_chat/a, api_base: x}\n")
    s = settings.load(env_file=tmp_path / "x", environ={"LITELLM_CONFIG": str(config)})
    assert embedding_model(s) is None
    assert EMBEDDING_CANARY not in {c.name for c in default_checks(s, FakeHTTP({}), prom=None)}


def _monitor(chat: ProbeResult, embedding: ProbeResult) -> Monitor:
    return Monitor([Check("proxy", lambda: ProbeResult(HEALTHY, 1.0, "ok", "", {"models": ["m", EMBED]}), 1, "proxy"),
                    Check("canary", lambda: chat, 10, "canary"),
                    Check(EMBEDDING_CANARY, lambda: embedding, 10, "canary", fail_after=1, model=EMBED)])


def test_the_canary_component_shows_each_kind_and_goes_red_when_the_embedding_route_breaks():
    chat = ProbeResult(HEALTHY, 3.0, "chat completion for m answered", "", {"model": "m"})
    broken = ProbeResult(UNHEALTHY, 2.0, f"embeddings for {EMBED} answered HTTP 500", "http", {"model": EMBED})
    monitor = _monitor(chat, broken)
    status = monitor.run_once()
    canary = status["components"]["canary"]
    assert canary["status"] == UNHEALTHY and "embeddings for all-minilm:22m" in canary["detail"]
    assert canary["kinds"]["chat"]["status"] == HEALTHY and canary["kinds"]["embedding"]["model"] == EMBED
    assert canary["model"] == "m"
    assert "canary request through the proxy failed: embeddings" in status["reason"]


def test_the_canary_is_healthy_when_both_kinds_answer():
    chat = ProbeResult(HEALTHY, 3.0, "chat completion for m answered", "", {"model": "m"})
    fine = ProbeResult(HEALTHY, 2.0, f"embeddings for {EMBED} answered (384 dims)", "", {"model": EMBED})
    canary = _monitor(chat, fine).run_once()["components"]["canary"]
    assert canary["status"] == HEALTHY and set(canary["kinds"]) == {"chat", "embedding"}
    assert canary["detail"] == "chat completion for m answered"
