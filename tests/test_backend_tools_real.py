"""Tool calls with the real SmolLM2-135M through the official `ollama` client: the grammar makes every
call valid, and a full round trip (ask, call, result, answer) works with the tools sent on every call."""
from __future__ import annotations

import json

import ollama
import pytest

from llmops.backend.tools import parse_tools
from llmops.backend.toolparse import validate_calls
from tests.support.backend import BackendProcess

pytestmark = pytest.mark.integration

TAG = "smollm2:135m"
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"]}}},
    {"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}},
]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    proc = BackendProcess("--num-ctx", "2048", "--models-dir", str(tmp_path_factory.mktemp("models")))
    yield ollama.Client(host=proc.url, timeout=120)
    proc.stop()


def test_show_says_smollm2_has_tools_and_gemma_not(client):
    assert "tools" in client.show(TAG).capabilities
    assert "tools" not in client.show("gemma3:270m").capabilities
    with pytest.raises(ollama.ResponseError) as err:
        client.chat("gemma3:270m", messages=[{"role": "user", "content": "hi"}], tools=TOOLS)
    assert err.value.status_code == 400 and "does not support tools" in err.value.error


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_call_names_a_tool_and_validates(client, seed):
    answer = client.chat(TAG, messages=[{"role": "user", "content": "What is 17 plus 25?"}], tools=TOOLS,
                         options={"temperature": 0.9, "seed": seed, "num_predict": 120})
    calls = [{"name": c.function.name, "arguments": dict(c.function.arguments)} for c in answer.message.tool_calls or []]
    if answer.done_reason == "stop" and not calls:
        assert answer.message.content.strip()  # an empty list: answered in text, never an empty reply
    assert validate_calls(calls, parse_tools(TOOLS)) == ""


def test_a_full_round_trip_ends_in_an_answer(client):
    messages = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]
    first = client.chat(TAG, messages=messages, tools=TOOLS, options={"temperature": 0, "num_predict": 120})
    assert first.message.tool_calls, first.message
    call = first.message.tool_calls[0]
    assert call.function.name == "get_weather" and isinstance(call.function.arguments["city"], str)
    messages += [first.message, {"role": "tool", "tool_name": "get_weather",
                                 "content": json.dumps({"temperature": 12, "unit": "celsius"})}]
    chunks = list(client.chat(TAG, messages=messages, tools=TOOLS, stream=True, options={"temperature": 0, "num_predict": 80}))
    assert chunks[-1].done and chunks[-1].done_reason in ("stop", "length")
    text = "".join(c.message.content for c in chunks)
    calls = [c for chunk in chunks for c in (chunk.message.tool_calls or [])]
    assert text.strip() or calls
