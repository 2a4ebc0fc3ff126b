"""Every model through the real LiteLLM proxy, in front of the FAKE multi-model Ollama (tests/fakes_ollama_faults.py).

The committed litellm_config.yaml is used as is: two chat models (ollama_chat/), one embedding model (ollama/ ->
/api/embed) and fallbacks between the chat models. The fake lets one model's deployment fail while the others
answer, and a real Prometheus scrapes the proxy, so the fallback is seen as the client and the operator see it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import openai
import pytest
import requests

from tests.conftest import ROOT, test_environ
from tests.fakes_ollama_faults import EMBED_DIMS, EMBED_MODEL, FakeOllama
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.integration
KEY = "sk-test-proxy-models"
PRIMARY, FALLBACK = "smollm2:135m", "gemma3:270m"


@pytest.fixture(scope="module")
def fake():
    with FakeOllama() as server:
        yield server


@pytest.fixture(scope="module")
def proxy(fake, tmp_path_factory):
    """The real proxy (scripts/start_litellm_proxy.sh, committed config) on a free port, 1 retry, 5 s timeout."""
    tmp = tmp_path_factory.mktemp("proxy-models")
    port = free_port()
    env = test_environ()
    env.update({"LITELLM_PORT": str(port), "OLLAMA_HOSTS": fake.url, "LITELLM_MASTER_KEY": KEY,
                "LITELLM_TIMEOUT": "5", "LITELLM_NUM_RETRIES": "1",
                "LLMOPS_STATE_DIR": str(tmp / "state"), "LLMOPS_ENV_FILE": str(tmp / "env")})
    log = open(tmp / "litellm.log", "w")  # noqa: SIM115 - the child keeps its own copy of the fd
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "start_litellm_proxy.sh")], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    url = f"http://127.0.0.1:{port}"

    def ready():
        assert proc.poll() is None, (tmp / "litellm.log").read_text()[-3000:]
        try:
            return requests.get(f"{url}/health/liveliness", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(ready, 120, "the proxy in front of the fake to start")
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def prometheus(proxy, tmp_path_factory):
    """A real Prometheus scraping that proxy's /metrics/ every second, with the key."""
    binary = shutil.which("prometheus")
    if not binary:
        pytest.fail("prometheus not found (apt-get install prometheus: `make setup`)")
    tmp = tmp_path_factory.mktemp("prom-models")
    port = free_port()
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n  - job_name: litellm\n    metrics_path: /metrics/\n"
        f"    authorization: {{credentials: {KEY}}}\n"
        f"    static_configs: [{{targets: ['{proxy.removeprefix('http://')}']}}]\n")
    proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(url), 60, "Prometheus to scrape the proxy")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _up(url: str) -> bool:
    try:
        return _prom(url, 'up{job="litellm"}') == 1.0
    except requests.RequestException:
        return False


def _prom(url: str, query: str) -> float | None:
    result = requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]
    return sum(float(r["value"][1]) for r in result) if result else None


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


def test_a_failing_model_is_answered_by_its_fallback_and_counted_in_prometheus(client, fake, prometheus):
    query = (f'sum(litellm_deployment_successful_fallbacks_total{{requested_model="{PRIMARY}"}})')
    before = _prom(prometheus, query) or 0.0
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
    wait_for(lambda: (_prom(prometheus, query) or 0.0) >= before + 1, 60, "Prometheus to count the fallback")
    labels = requests.get(f"{prometheus}/api/v1/query", timeout=5, params={"query": (
        f'litellm_deployment_successful_fallbacks_total{{requested_model="{PRIMARY}"}}')}).json()["data"]["result"]
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
