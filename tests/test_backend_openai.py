"""The embedded backend's OpenAI-compatible routes, against FakeEngine (a stand-in for llama.cpp)."""
from __future__ import annotations

import json

import pytest
import requests

from llmops.backend import create_app
from tests.support.fakes.backend import FAKE_TAG, FakeEngine, ServerThread, expected_text

MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


@pytest.fixture
def server(tmp_path):
    engine = FakeEngine(tmp_path / "fake.gguf")
    with ServerThread(create_app(engine)) as srv:
        srv.engine = engine
        yield srv


def test_models_lists_the_served_model(server):
    body = requests.get(server.url + "/v1/models", timeout=5).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [FAKE_TAG]
    assert isinstance(body["data"][0]["created"], int)


def test_chat_completion_has_choices_and_usage(server):
    body = requests.post(server.url + "/v1/chat/completions", timeout=10,
                         json={"model": FAKE_TAG, "messages": MESSAGES, "max_tokens": 4}).json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": expected_text(4)}
    assert choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 4
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 4


def test_streamed_chat_completion_is_server_sent_events_ending_in_done(server):
    response = requests.post(server.url + "/v1/chat/completions", timeout=10, json={
        "model": FAKE_TAG, "messages": MESSAGES, "max_tokens": 3, "stream": True,
        "stream_options": {"include_usage": True}, "stop": ["never"],
    })
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks if c["choices"])
    assert text == expected_text(3)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


def test_unknown_model_and_bad_fields_use_openais_error_shape(server):
    missing = requests.post(server.url + "/v1/chat/completions", timeout=5, json={"model": "gpt-9", "messages": MESSAGES})
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == 'model "gpt-9" not found, try pulling it first'
    bad = requests.post(server.url + "/v1/chat/completions", timeout=5,
                        json={"model": FAKE_TAG, "messages": MESSAGES, "max_tokens": "many"})
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert server.engine.calls == 0
