"""The embedded backend's Ollama API shapes, against FakeEngine (a deterministic stand-in for llama.cpp)."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
import requests

from llmops.backend import create_app
from tests.support.fakes.backend import FAKE_TAG, FakeEngine, ServerThread, expected_text

DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
COUNTS = ("prompt_eval_count", "eval_count")


@pytest.fixture
def server(tmp_path):
    engine = FakeEngine(tmp_path / "fake.gguf")
    with ServerThread(create_app(engine, max_queue=4)) as srv:
        srv.engine = engine
        yield srv


def post(server, path, body, **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(server.url + path, data=data, timeout=10, **kw)


def ndjson(response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_final(obj: dict, eval_count: int, done_reason: str = "length") -> None:
    assert obj["done"] is True
    assert obj["done_reason"] == done_reason
    assert obj["model"] == FAKE_TAG
    parse_time(obj["created_at"])
    for key in DURATIONS + COUNTS:
        assert isinstance(obj[key], int) and not isinstance(obj[key], bool), key
        assert obj[key] >= 0, key
    assert obj["eval_count"] == eval_count
    # Nanoseconds: the whole request took well over a microsecond and under a minute.
    assert 1_000 < obj["total_duration"] < 60 * 10**9
    assert obj["total_duration"] >= obj["load_duration"]


def test_root_answers_get_and_head(server):
    got = requests.get(server.url + "/", timeout=5)
    assert got.status_code == 200 and got.text == "Ollama is running"
    head = requests.head(server.url + "/", timeout=5)
    assert head.status_code == 200 and head.text == ""


def test_version_is_a_semver_string(server):
    body = requests.get(server.url + "/api/version", timeout=5).json()
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["version"])


def test_tags_lists_the_served_model_with_ollama_fields(server):
    (model,) = requests.get(server.url + "/api/tags", timeout=5).json()["models"]
    assert model["name"] == model["model"] == FAKE_TAG
    assert model["size"] == server.engine.info.path.stat().st_size
    assert re.fullmatch(r"[0-9a-f]{64}", model["digest"])
    parse_time(model["modified_at"])
    assert model["details"]["format"] == "gguf"
    assert model["details"]["quantization_level"] == "Q4_1"
    assert model["details"]["parameter_size"] == "1M"


def test_ps_shows_the_model_loaded_on_cpu_and_never_expiring(server):
    (model,) = requests.get(server.url + "/api/ps", timeout=5).json()["models"]
    assert model["name"] == FAKE_TAG
    assert model["size_vram"] == 0
    assert isinstance(model["size"], int) and model["size"] > 0
    assert parse_time(model["expires_at"]).year > datetime.now(UTC).year + 100
    assert model["details"]["family"] == "fake"


def test_show_describes_the_model(server):
    body = post(server, "/api/show", {"model": FAKE_TAG}).json()
    assert body["details"]["format"] == "gguf"
    assert body["model_info"]["llama.context_length"] == 4096  # numbers as numbers, like Ollama
    assert body["template"] == "{{ messages }}"
    assert "num_ctx" in body["parameters"]
    assert body["capabilities"] == ["completion"]


def test_show_unknown_model_is_404_and_missing_model_is_400(server):
    missing = post(server, "/api/show", {"model": "nope:1b"})
    assert missing.status_code == 404 and "nope:1b" in missing.json()["error"]
    assert post(server, "/api/show", {}).status_code == 400


def test_chat_streams_ndjson_ending_in_done(server):
    response = post(server, "/api/chat", {"model": FAKE_TAG, "messages": [{"role": "user", "content": "hi"}],
                                          "options": {"num_predict": 5}})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    lines = ndjson(response)
    *chunks, last = lines
    assert len(chunks) == 5
    for chunk in chunks:
        assert chunk["done"] is False and chunk["model"] == FAKE_TAG
        assert chunk["message"]["role"] == "assistant"
        parse_time(chunk["created_at"])
    assert "".join(c["message"]["content"] for c in chunks) == expected_text(5)
    assert last["message"] == {"role": "assistant", "content": ""}
    assert_final(last, eval_count=5)


def test_chat_without_stream_answers_one_object(server):
    response = post(server, "/api/chat", {"model": FAKE_TAG, "stream": False, "options": {"num_predict": 3},
                                          "messages": [{"role": "system", "content": "be brief"},
                                                       {"role": "user", "content": "hi there"}]})
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["message"] == {"role": "assistant", "content": expected_text(3)}
    assert_final(body, eval_count=3)
    assert body["prompt_eval_count"] == len("<system>be brief<user>hi there<assistant>".split())


def test_generate_streams_and_returns_context(server):
    lines = ndjson(post(server, "/api/generate", {"model": FAKE_TAG, "prompt": "why", "options": {"num_predict": 4}}))
    *chunks, last = lines
    assert "".join(c["response"] for c in chunks) == expected_text(4)
    assert all(c["done"] is False for c in chunks)
    assert_final(last, eval_count=4)
    assert last["response"] == ""
    assert isinstance(last["context"], list) and all(isinstance(t, int) for t in last["context"])
    assert len(last["context"]) == last["prompt_eval_count"] + last["eval_count"]


def test_generate_without_stream_and_raw_has_no_context(server):
    body = post(server, "/api/generate", {"model": FAKE_TAG, "prompt": "a b c", "raw": True, "stream": False,
                                          "options": {"num_predict": 2}}).json()
    assert body["response"] == expected_text(2)
    assert body["prompt_eval_count"] == 3  # raw: the prompt as given, no template
    assert "context" not in body
    assert_final(body, eval_count=2)


def test_empty_prompt_and_empty_messages_answer_load(server):
    gen = post(server, "/api/generate", {"model": FAKE_TAG}).json()
    assert gen["done"] is True and gen["done_reason"] == "load" and gen["response"] == ""
    chat = post(server, "/api/chat", {"model": FAKE_TAG, "messages": []}).json()
    assert chat["done_reason"] == "load" and chat["message"]["content"] == ""
    assert server.engine.calls == 0


def test_stop_option_ends_the_answer_before_the_stop_string(server):
    body = post(server, "/api/generate", {"model": FAKE_TAG, "prompt": "x", "stream": False,
                                          "options": {"num_predict": 50, "stop": [" w3"]}}).json()
    assert body["response"] == "w0 w1 w2"
    assert body["done_reason"] == "stop"


def test_model_name_without_registry_prefix_and_case_matches(server):
    body = post(server, "/api/generate", {"model": "registry.ollama.ai/library/FAKE:1m", "prompt": "x",
                                          "stream": False, "options": {"num_predict": 1}})
    assert body.status_code == 200


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
def test_unknown_model_is_404_with_ollamas_message(server, path):
    response = post(server, path, {"model": "llama9:70b", "prompt": "x", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 404
    assert response.json() == {"error": 'model "llama9:70b" not found, try pulling it first'}


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "invalid JSON"),
    (b"", "missing request body"),
    (b"[1, 2]", "JSON object"),
    ({"messages": [{"role": "user", "content": "x"}]}, "model is required"),
    ({"model": FAKE_TAG, "messages": "hi"}, "messages must be a list"),
    ({"model": FAKE_TAG, "messages": [{"content": "x"}]}, "role"),
    ({"model": FAKE_TAG, "messages": [{"role": "user", "content": ["x"]}]}, "content must be a string"),
    ({"model": FAKE_TAG, "messages": [{"role": "bad", "content": "x"}]}, "chat template failed"),
    ({"model": FAKE_TAG, "messages": [{"role": "user", "content": "x"}], "options": {"num_predict": "ten"}}, "integer"),
    ({"model": FAKE_TAG, "messages": [{"role": "user", "content": "x"}], "options": {"temperature": "hot"}}, "number"),
    ({"model": FAKE_TAG, "messages": [{"role": "user", "content": "x"}], "options": []}, "options must be an object"),
    ({"model": FAKE_TAG, "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream must be"),
    ({"model": FAKE_TAG, "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "does not support tools"),
])
def test_bad_chat_requests_are_400_with_an_error_string(server, body, fragment):
    response = post(server, "/api/chat", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert isinstance(error, str) and fragment in error
    assert server.engine.calls == 0


def test_generate_rejects_a_context_that_is_not_token_ids(server):
    response = post(server, "/api/generate", {"model": FAKE_TAG, "prompt": "x", "context": ["a"]})
    assert response.status_code == 400 and "context" in response.json()["error"]


def test_num_ctx_caps_the_answer_length(server):
    # A 16-token window: the 1-token prompt leaves 15 tokens before the window is full.
    body = post(server, "/api/generate", {"model": FAKE_TAG, "prompt": "x", "raw": True, "stream": False,
                                          "options": {"num_ctx": 16}}).json()
    assert body["eval_count"] == 15 and body["done_reason"] == "length"


def test_unknown_path_is_404(server):
    assert requests.get(server.url + "/api/nothing", timeout=5).status_code == 404
