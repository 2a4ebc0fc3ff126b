"""Tool calls with the real SmolLM2-135M through the official `ollama` client: the grammar makes every
call valid, and a full round trip (ask, call, result, answer) works with the tools sent on every call."""
from __future__ import annotations

import json

import ollama
import openai
import pytest
import requests

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


def test_show_says_smollm2_has_tools_and_gemma_not(client, backend):
    from litellm.llms.ollama.common_utils import OllamaModelInfo

    assert client.show(TAG).capabilities == ["completion", "tools"]
    assert "tools" not in client.show("gemma3:270m").capabilities
    # LiteLLM decides supports_function_calling for an Ollama model from /api/show's template.
    info = OllamaModelInfo()
    assert info.get_runtime_model_info(f"ollama_chat/{TAG}", api_base=backend.url)["supports_function_calling"] is True
    assert info.get_runtime_model_info("ollama_chat/gemma3:270m", api_base=backend.url)["supports_function_calling"] is False
    with pytest.raises(ollama.ResponseError) as err:
        client.chat("gemma3:270m", messages=[{"role": "user", "content": "hi"}], tools=TOOLS)
    assert err.value.status_code == 400 and err.value.error == "gemma3:270m does not support tools"


@pytest.mark.parametrize("prop, fragment", [
    ({"type": "string", "pattern": "^[\\w]+$"}, "llama.cpp cannot compile"),  # the converter takes it, llama.cpp does not
    ({"type": "string", "maxLength": 50_000}, "maxLength: 50000"),  # its grammar crashed the process (a stack overflow)
])
def test_a_schema_whose_grammar_does_not_compile_is_a_400_naming_the_tool_and_the_backend_answers_on(client, backend, prop,
                                                                                                    fragment):
    # Plain HTTP: the ollama client's Tool model keeps only type, description, enum and items of a parameter.
    bad = {"type": "function", "function": {"name": "broken", "parameters": {"type": "object", "properties": {"x": prop}}}}
    ask = {"model": TAG, "messages": [{"role": "user", "content": "hi"}], "tools": [TOOLS[0], bad]}
    for path, stream in (("/api/chat", False), ("/api/chat", True), ("/v1/chat/completions", True)):
        response = requests.post(backend.url + path, json={**ask, "stream": stream}, timeout=60)
        error = response.json()["error"]
        message = error["message"] if path.startswith("/v1/") else error
        assert response.status_code == 400 and "tool 'broken' parameters" in message and fragment in message, response.text
    assert client.chat(TAG, messages=[{"role": "user", "content": "hi"}], options={"num_predict": 4}).done


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_call_names_a_tool_and_validates(client, seed):
    answer = client.chat(TAG, messages=[{"role": "user", "content": "What is 17 plus 25?"}], tools=TOOLS,
                         options={"temperature": 0.9, "seed": seed, "num_predict": 120})
    calls = [{"name": c.function.name, "arguments": dict(c.function.arguments)} for c in answer.message.tool_calls or []]
    if answer.done_reason == "stop" and not calls:
        assert answer.message.content.strip()  # an empty list: answered in text, never an empty reply
    assert validate_calls(calls, parse_tools(TOOLS)) == ""


@pytest.mark.parametrize("stream", [False, True])
def test_a_full_round_trip_ends_in_an_answer(client, stream):
    """Ask, call, result, answer, with the tools sent on every call, streamed or not."""
    def turn(messages):
        options = {"temperature": 0, "num_predict": 120}
        if not stream:
            answer = client.chat(TAG, messages=messages, tools=TOOLS, options=options)
            return answer.message.content, list(answer.message.tool_calls or []), answer.done_reason
        chunks = list(client.chat(TAG, messages=messages, tools=TOOLS, stream=True, options=options))
        assert chunks[-1].done and all(not c.done for c in chunks[:-1])
        return ("".join(c.message.content for c in chunks), [t for c in chunks for t in (c.message.tool_calls or [])],
                chunks[-1].done_reason)

    messages = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]
    text, calls, reason = turn(messages)
    assert calls and reason == "stop", (text, reason)
    assert calls[0].function.name == "get_weather" and calls[0].function.arguments == {"city": "Paris", "unit": "celsius"}
    assert validate_calls([{"name": c.function.name, "arguments": dict(c.function.arguments)} for c in calls],
                          parse_tools(TOOLS)) == ""
    messages += [{"role": "assistant", "content": text, "tool_calls": calls}]
    messages += [{"role": "tool", "tool_name": c.function.name, "content": json.dumps({"temperature": 12, "unit": "celsius"})}
                 for c in calls]
    text, calls, reason = turn(messages)
    assert reason in ("stop", "length") and (text.strip() or calls), "never an empty reply"


def _calls(message) -> list[dict]:
    return [{"name": c.function.name, "arguments": json.loads(c.function.arguments)} for c in message.tool_calls or []]


def _turn(api, messages: list[dict], stream: bool, **extra) -> tuple[str, list[dict], str]:
    """One chat completion through the openai client: (text, calls as {"id", "name", "arguments" text}, finish)."""
    if not stream:
        choice = api.chat.completions.create(model=TAG, messages=messages, tools=TOOLS, temperature=0, **extra).choices[0]
        calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                 for c in choice.message.tool_calls or []]
        return choice.message.content or "", calls, choice.finish_reason
    text, calls, finish = "", {}, []
    for chunk in api.chat.completions.create(model=TAG, messages=messages, tools=TOOLS, temperature=0, stream=True,
                                             **extra):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for d in delta.tool_calls or []:
            call = calls.setdefault(d.index, {"id": d.id, "name": "", "arguments": ""})
            call["name"] += (d.function.name or "") if d.function else ""
            call["arguments"] += (d.function.arguments or "") if d.function else ""
        if chunk.choices[0].finish_reason:
            finish.append(chunk.choices[0].finish_reason)
    assert len(finish) == 1, finish
    return text, [calls[i] for i in sorted(calls)], finish[0]


def test_through_the_proxy_the_openai_client_gets_tool_calls_and_a_round_trip(backend, tmp_path):
    key = "sk-test-tools"
    db = tmp_path / "requests.db"
    with real_proxy(tmp_path, key, OLLAMA_HOSTS=backend.url, REQUEST_LOG_PATH=str(db)) as url:
        api = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=120)
        first_calls = {}
        for stream in (False, True):
            # A full round trip, the tools sent on every call as agent loops do; the answer ends the loop.
            messages = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]
            text, calls, finish = _turn(api, messages, stream, max_tokens=120)
            assert finish == "tool_calls" and calls, (stream, text, finish)
            parsed = [{"name": c["name"], "arguments": json.loads(c["arguments"])} for c in calls]  # JSON text, whole
            assert validate_calls(parsed, parse_tools(TOOLS)) == "" and parsed[0]["name"] == "get_weather"
            assert all(c["id"] for c in calls)
            first_calls[stream] = len(calls)
            messages.append({"role": "assistant", "content": text or None, "tool_calls": [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in calls]})
            messages += [{"role": "tool", "tool_call_id": c["id"], "content": "12 degrees celsius"} for c in calls]
            text, calls, finish = _turn(api, messages, stream, max_tokens=80)
            assert finish in ("stop", "length", "tool_calls") and (text.strip() or calls), (stream, text, finish)
            assert (finish == "tool_calls") == bool(calls)

        # tool_choice crosses the proxy (the tool_choice plug-in): a named function is forced ...
        named = api.chat.completions.create(model=TAG, messages=[{"role": "user", "content": "Hello!"}], tools=TOOLS,
                                            max_tokens=120, temperature=0,
                                            tool_choice={"type": "function", "function": {"name": "add"}})
        assert [c["name"] for c in _calls(named.choices[0].message)][:1] == ["add"]
        # ... required forces a call even where no tool fits the message ...
        required = api.chat.completions.create(model=TAG, messages=[{"role": "user", "content": "Hello!"}],
                                               tools=TOOLS, max_tokens=120, temperature=0, tool_choice="required")
        assert required.choices[0].finish_reason == "tool_calls" and _calls(required.choices[0].message)
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
        bad = [{"type": "function", "function": {"name": "broken", "parameters": {  # valid, but no grammar compiles
            "type": "object", "properties": {"x": {"type": "string", "pattern": "^[\\w]+$"}}}}}]
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
            return found if len(found) >= 10 else None

        logged = wait_for(rows, 20, "ten rows in the request log")
        assert sum(r["tools"] == len(TOOLS) for r in logged) == 8
        assert {"model": TAG, "status": 400, "tools": 1, "tool_calls": None, "finish_reason": None} in logged

        # The traffic generator with --tools through the same proxy: with the grammar no call is invalid.
        tools_file = tmp_path / "tools.json"
        tools_file.write_text(json.dumps(TOOLS))
        out = tmp_path / "traffic.jsonl"
        result = run(TrafficConfig(url=url, api_key=key, model=TAG, tools=str(tools_file), max_requests=3,
                                   concurrency=1, max_tokens=120, temperature=0.7, seed=4, output=out))
        assert result.summary["requests"]["total"] == 3 and result.summary["failures"] == {}, result.summary
        assert all("tool_calls" in json.loads(line) for line in out.read_text().splitlines())
        for made in first_calls.values():
            assert {"model": TAG, "status": 200, "tools": 2, "tool_calls": made, "finish_reason": "tool_calls"} in logged
        assert any(r["status"] == 200 and r["tool_calls"] == 0 for r in logged)  # tool_choice none: text
        assert {"model": "gemma3:270m", "status": 400, "tools": 2, "tool_calls": None, "finish_reason": None} in logged


def test_a_text_answer_that_the_model_would_end_at_once_goes_on_to_visible_text():
    """SmolLM2, greedy, after an assistant turn that is already complete, ends at once; a tool chat's text answer
    (GenOptions.text_required) instead goes on until it holds visible text."""
    from llmops.backend.engine import LlamaEngine
    from llmops.backend.model import default_model_path
    from llmops.backend.options import GenOptions

    prompt = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello! How can I help you today?"
    engine = LlamaEngine(default_model_path(), TAG, n_ctx=256)
    try:
        def first_tokens(opts: GenOptions, most: int) -> list[int]:
            tokens, out = engine.tokenize(prompt), []
            engine.seq_rm(0, -1, -1)
            sampler, pos = engine.sampler(opts, 0), 0
            try:
                while len(out) < most:
                    row = engine.decode([(0, tokens, pos, True)])[0]
                    pos += len(tokens)
                    token = sampler.sample(row)
                    if engine.is_eog(token):
                        break
                    out.append(token)
                    if engine.piece(token).strip():
                        break
                    tokens = [token]
            finally:
                sampler.free()
            return out

        assert first_tokens(GenOptions(temperature=0), 8) == []  # the plain answer is empty
        text = first_tokens(GenOptions(temperature=0, text_required=True), 8)
        assert text and engine.piece(text[-1]).strip(), [engine.piece(t) for t in text]
    finally:
        engine.close()
