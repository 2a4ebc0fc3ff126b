"""Every model through the real LiteLLM proxy, in front of the FAKE multi-model Ollama (tests/support/fakes/ollama.py).

The committed litellm_config.yaml is used as is: two chat models (ollama_chat/), one embedding model (ollama/ ->
/api/embed) and fallbacks between the chat models. The fake lets one model's deployment fail while the others
answer, and a real Prometheus scrapes the proxy, so the fallback is seen as the client and the operator see it.
The tests that make a model fail come last: the proxy cools a failed deployment down for 30 s (cooldown_time).
"""
from __future__ import annotations

import json
import uuid

import openai
import pytest
import requests

from tests.support.fakes.ollama import EMBED_DIMS, EMBED_MODEL, FakeOllama
from tests.support.helpers import wait_for
from tests.support.proxy import prom_series, prom_sum, real_prometheus, real_proxy

pytestmark = pytest.mark.integration
KEY = "sk-test-proxy-models"
PRIMARY, FALLBACK = "smollm2:135m", "gemma3:270m"


@pytest.fixture(scope="module")
def fake():
    with FakeOllama() as server:
        yield server


@pytest.fixture(scope="module")
def proxy(fake, tmp_path_factory):
    """The real proxy (committed config) in front of the fake, 1 retry, 5 s timeout."""
    tmp = tmp_path_factory.mktemp("proxy-models")
    with real_proxy(tmp, KEY, OLLAMA_HOSTS=fake.url, LITELLM_TIMEOUT="5", LITELLM_NUM_RETRIES="1") as url:
        yield url


@pytest.fixture(scope="module")
def prometheus(proxy, tmp_path_factory):
    """A real Prometheus scraping that proxy every second."""
    with real_prometheus(tmp_path_factory.mktemp("prom-models"), proxy, KEY) as url:
        yield url


@pytest.fixture
def client(proxy, fake):
    fake.reset()
    return openai.OpenAI(base_url=f"{proxy}/v1", api_key=KEY, max_retries=0, timeout=60)


def test_embeddings_through_the_proxy_take_a_string_and_a_list(client, fake):
    one = client.embeddings.create(model=EMBED_MODEL, input="a cat sits on the mat")
    assert len(one.data) == 1 and len(one.data[0].embedding) == EMBED_DIMS
    many = client.embeddings.create(model=EMBED_MODEL, input=["a cat", "a kitten", "revenue rose 4%"])
    assert [d.index for d in many.data] == [0, 1, 2]
    assert all(len(d.embedding) == EMBED_DIMS for d in many.data)
    # (The proxy's background health checks embed "test from litellm" too: those are left out.)
    bodies = [json.loads(s.body) for s in fake.seen if s.path == "/api/embed" and b"test from litellm" not in s.body]
    # ollama/ posts Ollama's /api/embed with the inputs as one list: one request per call, a batch for a list.
    assert [b["input"] for b in bodies] == [["a cat sits on the mat"], ["a cat", "a kitten", "revenue rose 4%"]]
    assert all(b["model"] == EMBED_MODEL for b in bodies)


def test_an_embedding_request_for_a_chat_model_is_a_clear_error(client):
    with pytest.raises(openai.APIStatusError) as info:
        client.embeddings.create(model=PRIMARY, input="hello")
    assert 400 <= info.value.status_code < 500
    assert info.value.body  # an error in OpenAI's shape, not an empty answer


def test_the_dashboards_per_model_rows_equal_what_was_sent_per_model_and_class(proxy, fake, prometheus):
    """Real proxy and Prometheus, the dashboard app in-process reading them: every request lands in its model's row
    and its class, counted exactly (new series included, which increase() would undercount).

    It runs before the fallback tests: the cooldowns and fallbacks they cause would move requests between models."""
    from llmops.dashboard import create_app
    from llmops.dashboard.promapi import PromAPI
    from tests.support.fakes.dashboard import make_settings

    fake.reset()
    agent = {"User-Agent": f"llmops-test/rows-{uuid.uuid4().hex[:8]}"}
    headers = {"Authorization": f"Bearer {KEY}", **agent}
    app = create_app({"SETTINGS": make_settings(), "START_MONITOR": False, "CHECKS": [], "CACHE_SECONDS": 0,
                      "PROMETHEUS": PromAPI(prometheus)})
    client = app.test_client()

    def rows() -> dict:
        body = client.get("/api/models/traffic?window=15m").get_json()
        assert body["available"], body
        return {r["name"]: r["traffic"] or {"requests": 0, "outcomes": {}} for r in body["models"]}

    before = rows()

    def post(path: str, body: dict) -> int:
        return requests.post(f"{proxy}/v1/{path}", json=body, headers=headers, timeout=60).status_code

    chat = lambda model: post("chat/completions", {"model": model, "max_tokens": 4,  # noqa: E731
                                                   "messages": [{"role": "user", "content": "hi"}]})
    sent = {PRIMARY: [chat(PRIMARY) for _ in range(3)], FALLBACK: [chat(FALLBACK) for _ in range(2)]}
    embeds = [post("embeddings", {"model": EMBED_MODEL, "input": ["a", "b"]}) for _ in range(2)]
    embeds.append(post("embeddings", {"model": EMBED_MODEL, "input": [{"not": "text"}]}))  # LiteLLM: 400
    fake.set_fault("http500", model=EMBED_MODEL)
    embeds += [post("embeddings", {"model": EMBED_MODEL, "input": "c"}) for _ in range(2)]
    sent[EMBED_MODEL] = embeds
    classes = {2: "ok", 4: "client_error", 5: "server_error"}
    expected = {m: {"requests": len(codes), **{c: sum(1 for x in codes if x // 100 == k) for k, c in classes.items()}}
                for m, codes in sent.items()}
    assert expected[EMBED_MODEL] == {"requests": 5, "ok": 2, "client_error": 1, "server_error": 2}, sent

    def seen() -> dict:
        now = rows()
        out = {}
        for model in sent:
            new, old = now.get(model, {"requests": 0, "outcomes": {}}), before.get(model, {"requests": 0, "outcomes": {}})
            out[model] = {"requests": new["requests"] - old["requests"],
                          **{c: new["outcomes"].get(c, 0) - old["outcomes"].get(c, 0) for c in classes.values()}}
        return out

    wait_for(lambda: seen() == expected, 60, f"the dashboard's rows to show {expected} (last {seen()})")
    embed_row = next(r for r in client.get("/api/models/traffic?window=15m").get_json()["models"]
                     if r["name"] == EMBED_MODEL)
    assert embed_row["kind"] == "embedding" and embed_row["traffic"]["embedding_requests"] >= 5


def test_the_generator_through_the_real_proxy_counts_a_mix_and_embeddings_once(proxy, fake, tmp_path):
    import json as _json

    from llmops.traffic import TrafficConfig, run

    fake.reset()
    out = tmp_path / "mix.jsonl"
    result = run(TrafficConfig(url=proxy, api_key=KEY, model=f"{PRIMARY},{FALLBACK}:3", max_requests=40,
                               concurrency=4, seed=9, output=out, max_tokens=4))
    lines = [_json.loads(line) for line in out.read_text().splitlines()]
    assert result.exit_code == 0, result.verdict
    assert sorted(r["id"] for r in lines) == list(range(1, 41)) and all(r["status"] == "ok" for r in lines)
    by_model = {m: sum(1 for r in lines if r["model"] == m) for m in (PRIMARY, FALLBACK)}
    assert {m: v["requests"]["total"] for m, v in result.summary["models"].items()} == by_model
    sent = fake.model_counts("/api/chat")
    assert sent[PRIMARY] >= by_model[PRIMARY] and sent[FALLBACK] >= by_model[FALLBACK]  # + health checks
    embed = run(TrafficConfig(url=proxy, api_key=KEY, model=EMBED_MODEL, endpoint="embeddings", batch=4,
                              max_requests=10, concurrency=2, seed=9))
    assert embed.summary["requests"] == {**embed.summary["requests"], "total": 10, "ok": 10}
    bodies = [_json.loads(s.body) for s in fake.seen if s.path == "/api/embed" and b"test from litellm" not in s.body]
    assert len(bodies) == 10 and all(len(b["input"]) == 4 for b in bodies)


def test_json_object_and_json_schema_reach_the_backend_as_ollama_format(client, fake):
    plain = client.chat.completions.create(model=PRIMARY, messages=[{"role": "user", "content": "a JSON object"}],
                                           response_format={"type": "json_object"}, max_tokens=16)
    assert json.loads(plain.choices[0].message.content) == {"answer": "ok"}
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    shaped = client.chat.completions.create(
        model=FALLBACK, messages=[{"role": "user", "content": "an answer"}], max_tokens=16,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
    assert json.loads(shaped.choices[0].message.content)["answer"] == "ok"
    formats = [json.loads(s.body).get("format") for s in fake.seen
               if s.path == "/api/chat" and b"test from litellm" not in s.body]
    assert formats[0] == "json" and formats[1] == schema


def test_the_embedding_canary_sees_a_broken_embedding_route_without_traffic(proxy, fake):
    import requests as http

    from llmops import health as probes

    fake.reset()
    assert probes.probe_embedding_canary(http.Session(), proxy, KEY, EMBED_MODEL).status == "healthy"
    fake.set_fault("http500", model=EMBED_MODEL)
    broken = probes.probe_embedding_canary(http.Session(), proxy, KEY, EMBED_MODEL)
    assert broken.status == "unhealthy" and f"embeddings for {EMBED_MODEL} answered HTTP 5" in broken.detail
    # The chat canary still answers: the kinds are told apart.
    assert probes.probe_canary(http.Session(), proxy, KEY, PRIMARY).status == "healthy"


def test_a_failing_model_is_answered_by_its_fallback_and_counted_in_prometheus(client, fake, prometheus):
    query = (f'sum(litellm_deployment_successful_fallbacks_total{{requested_model="{PRIMARY}"}})')
    before = prom_sum(prometheus, query) or 0.0
    fake.set_fault("http500", model=PRIMARY)
    nonce = uuid.uuid4().hex
    raw = client.chat.completions.with_raw_response.create(
        model=PRIMARY, messages=[{"role": "user", "content": f"Say hello {nonce}"}], max_tokens=8)
    answer = raw.parse()
    assert answer.choices[0].message.content == "ok"
    # The answer names the model that served it: the fallback, not the one asked for.
    assert FALLBACK in answer.model and PRIMARY not in answer.model
    assert raw.headers["x-litellm-model-group"] == FALLBACK
    assert int(raw.headers["x-litellm-attempted-fallbacks"]) == 1
    seen = fake.model_counts("/api/chat", nonce)
    assert seen[PRIMARY] >= 2 and seen[FALLBACK] == 1  # the first model with its retry, then the fallback once
    wait_for(lambda: (prom_sum(prometheus, query) or 0.0) >= before + 1, 60, "Prometheus to count the fallback")
    labels = prom_series(prometheus, f'litellm_deployment_successful_fallbacks_total{{requested_model="{PRIMARY}"}}')
    # ...and the dashboard's row for the model that failed says it fell back.
    from llmops.dashboard import create_app
    from llmops.dashboard.promapi import PromAPI
    from tests.support.fakes.dashboard import make_settings

    app = create_app({"SETTINGS": make_settings(), "START_MONITOR": False, "CHECKS": [], "CACHE_SECONDS": 0,
                      "PROMETHEUS": PromAPI(prometheus)})
    rows = {r["name"]: r for r in app.test_client().get("/api/models/traffic?window=15m").get_json()["models"]}
    assert rows[PRIMARY]["traffic"]["fallbacks"] >= 1
    assert any(FALLBACK in r["metric"].get("fallback_model", "") for r in labels), labels


def test_both_chat_models_failing_is_one_clear_error(client, fake):
    fake.set_fault("http500", model=PRIMARY)
    fake.set_fault("http500", model=FALLBACK)
    nonce = uuid.uuid4().hex
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=PRIMARY, messages=[{"role": "user", "content": f"hi {nonce}"}],
                                       max_tokens=8)
    assert info.value.status_code >= 500
    seen = fake.model_counts("/api/chat", nonce)
    assert seen[PRIMARY] >= 1 and seen[FALLBACK] >= 1  # the fallback was tried before giving up
