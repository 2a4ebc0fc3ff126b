"""Tool calls with the real SmolLM2-135M through the official `ollama` client: the grammar makes every
call valid, and a full round trip (ask, call, result, answer) works with the tools sent on every call."""
from __future__ import annotations

import json

import ollama
import openai
import pytest

from llmops.backend.toolparse import validate_calls
from llmops.backend.tools import parse_tools
from llmops.requestlog import store
from llmops.traffic import TrafficConfig, run
from tests.support.backend import BackendProcess
from tests.support.helpers import wait_for
from tests.support.proxy import real_proxy

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
def backend(tmp_path_factory):
    proc = BackendProcess("--num-ctx", "2048", "--models-dir", str(tmp_path_factory.mktemp("models")))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(backend):
    return ollama.Client(host=backend.url, timeout=120)


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


def _calls(message) -> list[dict]:
    return [{"name": c.function.name, "arguments": json.loads(c.function.arguments)} for c in message.tool_calls or []]


def test_through_the_proxy_the_openai_client_gets_tool_calls_and_a_round_trip(backend, tmp_path):
    key = "sk-test-tools"
    db = tmp_path / "requests.db"
    with real_proxy(tmp_path, key, OLLAMA_HOSTS=backend.url, REQUEST_LOG_PATH=str(db)) as url:
        api = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=120)
        messages = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]
        first = api.chat.completions.create(model=TAG, messages=messages, tools=TOOLS, max_tokens=120, temperature=0)
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        calls = _calls(choice.message)  # arguments arrive as JSON strings
        assert calls and validate_calls(calls, parse_tools(TOOLS)) == ""
        # The tools are sent again with the result, as agent loops do; the answer ends the loop.
        messages += [choice.message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": choice.message.tool_calls[0].id, "content": "12 degrees celsius"}]
        stream = api.chat.completions.create(model=TAG, messages=messages, tools=TOOLS, max_tokens=80, temperature=0,
                                             stream=True)
        chunks = list(stream)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert finish and (text.strip() or finish[-1] == "tool_calls")

        streamed = list(api.chat.completions.create(model=TAG, messages=messages[:1], tools=TOOLS, max_tokens=120,
                                                    temperature=0, stream=True))
        deltas = [d for c in streamed if c.choices for d in (c.choices[0].delta.tool_calls or [])]
        assert deltas and json.loads(deltas[0].function.arguments)  # a JSON string, whole
        assert [c.choices[0].finish_reason for c in streamed if c.choices and c.choices[0].finish_reason][-1] == "tool_calls"

        # tool_choice crosses the proxy (the tool_choice plug-in): a named function is forced ...
        named = api.chat.completions.create(model=TAG, messages=[{"role": "user", "content": "Hello!"}], tools=TOOLS,
                                            max_tokens=120, temperature=0,
                                            tool_choice={"type": "function", "function": {"name": "add"}})
        assert [c["name"] for c in _calls(named.choices[0].message)][:1] == ["add"]
        # ... and none offers no tools: a text answer.
        none = api.chat.completions.create(model=TAG, messages=[{"role": "user", "content": "Hello!"}], tools=TOOLS,
                                           max_tokens=30, temperature=0, tool_choice="none")
        assert none.choices[0].message.content and not none.choices[0].message.tool_calls

        # A model without tools answers 400, and the router does not retry it on the fallback model.
        with pytest.raises(openai.BadRequestError) as err:
            api.chat.completions.create(model="gemma3:270m", messages=[{"role": "user", "content": "hi"}], tools=TOOLS,
                                        max_tokens=8)
        assert "gemma3:270m does not support tools" in str(err.value)

        # A schema the grammar cannot take: a 400 naming the tool, in OpenAI's shape, and the stack answers on.
        bad = [{"type": "function", "function": {"name": "broken", "parameters": {
            "type": "object", "properties": {"x": {"type": "no-such-type"}}}}}]
        with pytest.raises(openai.BadRequestError) as err:
            api.chat.completions.create(model=TAG, messages=[{"role": "user", "content": "hi"}], tools=bad, max_tokens=8)
        assert "tool 'broken'" in str(err.value)
        assert api.chat.completions.create(model=TAG, messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=4).choices[0].finish_reason in ("stop", "length")

        # The request log says which requests carried tools and how many calls came back.
        def rows():
            if not db.exists():
                return None
            with store.connect_readonly(db) as conn:
                found = [dict(r) for r in conn.execute("SELECT model, status, tools, tool_calls, finish_reason FROM requests")]
            return found if len(found) >= 8 else None

        logged = wait_for(rows, 20, "eight rows in the request log")
        assert sum(r["tools"] == len(TOOLS) for r in logged) == 6
        assert {"model": TAG, "status": 400, "tools": 1, "tool_calls": None, "finish_reason": None} in logged

        # The traffic generator with --tools through the same proxy: with the grammar no call is invalid.
        tools_file = tmp_path / "tools.json"
        tools_file.write_text(json.dumps(TOOLS))
        out = tmp_path / "traffic.jsonl"
        result = run(TrafficConfig(url=url, api_key=key, model=TAG, tools=str(tools_file), max_requests=3,
                                   concurrency=1, max_tokens=120, temperature=0.7, seed=4, output=out))
        assert result.summary["requests"]["total"] == 3 and result.summary["failures"] == {}, result.summary
        assert all("tool_calls" in json.loads(line) for line in out.read_text().splitlines())
        calls_made = len(choice.message.tool_calls)
        assert {"model": TAG, "status": 200, "tools": 2, "tool_calls": calls_made, "finish_reason": "tool_calls"} in logged
        assert any(r["status"] == 200 and r["tool_calls"] == 0 for r in logged)  # tool_choice none: text
        assert {"model": "gemma3:270m", "status": 400, "tools": 2, "tool_calls": None, "finish_reason": None} in logged
