"""The embedded backend with the real SmolLM2-135M model, driven by the official `ollama` client."""
from __future__ import annotations

import re
from pathlib import Path

import ollama
import pytest
import requests

from tests.support.backend import BackendProcess
from tests.support.fakes.backend import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
TAG = "smollm2:135m"
SHORT = {"num_predict": 24, "temperature": 0.7, "seed": 7}


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    proc = BackendProcess("--num-ctx", "1024", "--models-dir", str(tmp_path_factory.mktemp("models")))
    yield proc
    proc.stop()


@pytest.fixture
def client(backend):
    return ollama.Client(host=backend.url, timeout=60)


def test_list_shows_smollm2_and_gemma(client):
    models = {m.model: m for m in client.list().models}
    assert {TAG, "gemma3:270m"} <= set(models)
    assert models[TAG].size == 98_362_432
    assert models[TAG].details.quantization_level == "Q4_1"
    assert models[TAG].details.parameter_size == "134.52M"
    assert models["gemma3:270m"].details.quantization_level == "Q4_K_M"
    assert models["gemma3:270m"].details.family == "gemma3"


def test_ps_shows_it_loaded_on_cpu_after_a_request(client):
    client.generate(model=TAG, prompt="Hi", options={"num_predict": 1})
    (model,) = [m for m in client.ps().models if m.model == TAG]
    assert model.size_vram == 0 and model.size > 98_362_432


def test_show_gives_the_models_own_template(client):
    shown = client.show(TAG)
    assert "<|im_start|>" in shown.template
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.details.family == "llama"


def test_chat_answers_with_text_and_counts(client):
    response = client.chat(model=TAG, messages=[{"role": "user", "content": "What is the capital of France?"}],
                           options=SHORT)
    assert response.message.role == "assistant"
    assert response.message.content.strip()
    assert response.done and response.done_reason in ("stop", "length")
    assert 0 < response.eval_count <= 24
    assert response.prompt_eval_count > 10  # the template's system prompt is in there
    assert response.eval_duration > 0 and response.total_duration >= response.eval_duration


def test_chat_streams_pieces(client):
    parts = list(client.chat(model=TAG, messages=[{"role": "user", "content": "Count to five."}],
                             options=SHORT, stream=True))
    assert len(parts) > 2
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    assert "".join(p.message.content for p in parts).strip()


def test_generate_answers_and_streams(client):
    whole = client.generate(model=TAG, prompt="Write one sentence about the sea.", options=SHORT)
    assert whole.response.strip() and whole.done and whole.context
    streamed = list(client.generate(model=TAG, prompt="Write one sentence about the sea.", options=SHORT, stream=True))
    assert "".join(p.response for p in streamed) == whole.response  # same seed, same answer


def test_seed_and_temperature_make_answers_repeatable(client):
    ask = dict(model=TAG, prompt="Tell me a story.", options={"num_predict": 20, "temperature": 1.0, "seed": 3})
    assert client.generate(**ask).response == client.generate(**ask).response
    greedy = dict(model=TAG, prompt="Tell me a story.", options={"num_predict": 20, "temperature": 0})
    assert client.generate(**greedy).response == client.generate(**greedy).response


def test_num_predict_and_stop_are_honoured(client):
    capped = client.generate(model=TAG, prompt="List ten fruits.", options={"num_predict": 5, "temperature": 0})
    assert capped.eval_count == 5 and capped.done_reason == "length"
    full = client.generate(model=TAG, prompt="List ten fruits.", options={"num_predict": 40, "temperature": 0})
    stop = full.response[10:14]
    cut = client.generate(model=TAG, prompt="List ten fruits.", options={"num_predict": 40, "temperature": 0, "stop": [stop]})
    assert cut.done_reason == "stop" and stop not in cut.response
    assert full.response.startswith(cut.response)


def test_unknown_model_raises_response_error_404(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="nope:1b", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404
    assert 'model "nope:1b" not found' in info.value.error


def test_disconnect_stops_a_real_generation(backend):
    def output_tokens() -> float:
        text = requests.get(backend.url + "/metrics", timeout=5).text
        found = re.search(r'^llm_backend_output_tokens_total\{model="smollm2:135m"\} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    before = output_tokens()
    body = {"model": TAG, "prompt": "Write a very long essay about rivers.", "options": {"num_predict": 900, "temperature": 1.0}}
    with requests.post(backend.url + "/api/generate", json=body, stream=True, timeout=30) as response:
        next(response.iter_lines())
    wait_for(lambda: "llm_backend_in_flight 0.0" in requests.get(backend.url + "/metrics", timeout=5).text,
             timeout=10, what="the generation to stop")
    assert output_tokens() - before < 900


def test_sigterm_exits_cleanly():
    proc = BackendProcess("--no-access-log")
    assert requests.get(proc.url + "/api/version", timeout=5).ok
    assert proc.stop() == 0
    assert any("shutting down" in line for line in proc.log)
