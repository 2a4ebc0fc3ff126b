"""Tool calling in the embedded backend: the smollm2 tool template, the call grammar, parsing, and
/api/chat with tools against FakeEngine (scripted answers; the real model's runs are in
test_backend_tools_real.py)."""
from __future__ import annotations

import json

import pytest
import requests

from llmops.backend import create_app
from llmops.backend.model import ModelInfo
from llmops.backend.options import BadRequest
from llmops.backend.templates import CALL_CLOSE, CALL_OPEN, render_smollm2, tool_template_for
from llmops.backend.toolparse import parse_answer, validate_calls
from llmops.backend.tools import calls_grammar, parse_choice, parse_tools
from tests.support.fakes.backend import FakeEngine, ServerThread
from tests.support.helpers import wait_for

TAG = "smollm2:135m"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
CALL = '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]</tool_call>'


def tool_model(tmp_path, tag: str = TAG) -> ModelInfo:
    path = tmp_path / "smol.gguf"
    path.write_bytes(b"GGUF fake model file")
    return ModelInfo(tag=tag, path=path, template="{{ messages }}", context_length=4096,
                     metadata={"general.architecture": "llama", "general.basename": "smollm2", "general.file_type": "3"})


@pytest.fixture
def server(tmp_path):
    engine = FakeEngine(tmp_path / "smol.gguf", tag=TAG, info=tool_model(tmp_path))
    with ServerThread(create_app(engine, max_queue=4)) as srv:
        srv.engine = engine
        yield srv


def chat(server, body, path="/api/chat"):
    return requests.post(server.url + path, json={"model": TAG, "stream": False, **body}, timeout=10)


# --- the template ---------------------------------------------------------------------------------

def test_tools_go_into_the_system_prompt_in_ollamas_smollm2_form():
    prompt = render_smollm2([{"role": "system", "content": "Be brief."}, *ASK], parse_tools([WEATHER]))
    assert prompt.startswith("<|im_start|>system\nBe brief.\n\nYou are an expert in composing functions.")
    tools_part = prompt.split("<tools>")[1].split("</tools>")[0]
    assert json.loads(tools_part.strip())["function"]["name"] == "get_weather"
    assert "NO other text MUST be included" in prompt and "'[]'" in prompt
    assert prompt.endswith("<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n")


def test_calls_and_results_render_back_as_history():
    messages = [*ASK, {"role": "assistant", "content": "", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
                {"role": "tool", "content": "12 C", "tool_name": "get_weather"}]
    prompt = render_smollm2(messages, [])
    assert "<|im_start|>system" not in prompt  # no system text and no tools: no system turn
    assert ('<|im_start|>assistant\n<tool_call>[\n{"name": "get_weather", "arguments": {"city":"Paris"}}\n]</tool_call>'
            '<|im_end|>\n') in prompt
    assert prompt.endswith("<|im_start|>user\n<tool_response>\n12 C\n</tool_response><|im_end|>\n<|im_start|>assistant\n")


def test_only_smollm2_has_a_tool_template():
    assert tool_template_for({"general.basename": "smollm2"}).calls_only
    assert tool_template_for({"general.architecture": "gemma3", "general.basename": "gemma-3"}) is None


# --- parsing --------------------------------------------------------------------------------------

def test_a_call_list_parses_into_names_and_argument_objects():
    parsed = parse_answer('thinking <tool_call>[{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": "{}"}]</tool_call>')
    assert parsed.calls == [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]
    assert parsed.content == "thinking"


@pytest.mark.parametrize("text, error", [
    ("<tool_call>[{\"name\": \"a\"", "no closing"),
    ("<tool_call>[{name: a}]</tool_call>", "not JSON"),
    ('<tool_call>[{"arguments": {}}]</tool_call>', "no name"),
    ('<tool_call>[{"name": "a", "arguments": [1]}]</tool_call>', "not an object"),
])
def test_a_broken_call_is_reported_and_kept_as_text(text, error):
    parsed = parse_answer(text)
    assert error in parsed.error and parsed.calls == [] and parsed.content == text


def test_plain_text_and_an_empty_list_are_no_calls():
    assert parse_answer("Hello").calls == [] and not parse_answer("Hello").has_call_form
    empty = parse_answer("<tool_call>[]</tool_call>")
    assert empty.has_call_form and empty.calls == [] and not empty.error


def test_calls_are_validated_against_the_tools_schemas():
    tools = parse_tools([WEATHER])
    assert validate_calls([{"name": "get_weather", "arguments": {"city": "P", "unit": "celsius"}}], tools) == ""
    assert "unknown tool" in validate_calls([{"name": "func_name1", "arguments": {}}], tools)
    assert "'kelvin' is not one of" in validate_calls([{"name": "get_weather", "arguments": {"city": "P", "unit": "kelvin"}}], tools)


# --- tools and choices ----------------------------------------------------------------------------

@pytest.mark.parametrize("tools, fragment", [
    ([{"type": "function", "function": {"description": "no name"}}], "tools[0].function.name is required"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "date"}}}}}],
     "tool 'f' parameters"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"$ref": "#/$defs/gone"}}}}}],
     "tool 'f' parameters: $ref '#/$defs/gone' leads nowhere"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}}}}],
     "tool 'f' parameters: only local $ref"),
    ([{"type": "retrieval"}], 'must be "function"'),
    ([WEATHER, WEATHER], "given twice"),
    ("get_weather", "tools must be a list"),
])
def test_bad_tools_are_refused_naming_the_problem(tools, fragment):
    with pytest.raises(BadRequest, match=None) as err:
        parse_tools(tools)
    assert fragment in str(err.value)


def schema_tool(name: str, prop: dict) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {"x": prop}}}}


# Schemas the converter takes but llama.cpp's grammar parser refuses, or that would crash it (a stack
# overflow past ~19,000 nested groups) or fill the memory while the converter writes them.
UNCOMPILABLE = [
    (schema_tool("words", {"type": "string", "pattern": "^[\\w]+$"}), "tool 'words' parameters: llama.cpp cannot compile"),
    (schema_tool("again", {"type": "string", "pattern": "^(a)\\1$"}), "tool 'again' parameters: llama.cpp cannot compile"),
    (schema_tool("nothing", {"enum": []}), "tool 'nothing' parameters: llama.cpp cannot compile"),
    ({"type": "function", "function": {"name": "quoted", "parameters": {"type": "object", "properties": {'a"b': {"type": "string"}}}}},
     "tool 'quoted' parameters: llama.cpp cannot compile"),
    (schema_tool("long", {"type": "string", "maxLength": 20_000}), "tool 'long' parameters: maxLength: 20000 at /properties/x"),
    (schema_tool("huge", {"type": "string", "minLength": 10**9}), "tool 'huge' parameters: minLength: 1000000000"),
    (schema_tool("many", {"type": "array", "items": {"type": "integer"}, "maxItems": 5000}), "maxItems: 5000"),
    (schema_tool("rep", {"type": "string", "pattern": "^a{0,20000}$"}), "the pattern's {0,20000} at /properties/x"),
    (schema_tool("never", {"type": "string", "minLength": 5, "maxLength": 2}), "minLength: 5 is more than maxLength: 2"),
]


@pytest.mark.parametrize("tool, fragment", UNCOMPILABLE)
def test_a_schema_llama_cpp_cannot_compile_is_refused_naming_the_tool(tool, fragment):
    with pytest.raises(BadRequest) as err:
        parse_tools([tool])
    assert fragment in str(err.value)


def test_the_largest_bound_the_grammar_holds_still_compiles(judge):
    gbnf = calls_grammar(parse_tools([schema_tool("note", {"type": "string", "maxLength": 1000})]), required=True)
    assert judge.allows(gbnf, calls(("note", {"x": "a" * 1000})))
    assert not judge.allows(gbnf, calls(("note", {"x": "a" * 1001})))


def test_a_grammar_nested_too_deep_is_refused_before_llama_cpp_reads_it():
    from llmops.backend.structured import MAX_GRAMMAR_DEPTH, check_compiles, grammar_depth

    assert grammar_depth('root ::= "(" [(] (a (b)?)? # ((((\nx ::= "\\"(" ') == 2
    deep = "root ::= " + "(" * (MAX_GRAMMAR_DEPTH + 1) + '"a"' + ")?" * (MAX_GRAMMAR_DEPTH + 1)
    with pytest.raises(BadRequest, match=f"nests {MAX_GRAMMAR_DEPTH + 1} levels deep"):
        check_compiles(deep, "format")


def test_tool_choice_none_offers_nothing_and_a_named_one_is_required_alone():
    tools = parse_tools([WEATHER, TIME])
    assert parse_choice("none", tools) == ("none", [])
    assert parse_choice(None, tools) == ("auto", tools)
    assert parse_choice("required", tools) == ("required", tools)
    mode, chosen = parse_choice({"type": "function", "function": {"name": "get_time"}}, tools)
    assert mode == "required" and [t["function"]["name"] for t in chosen] == ["get_time"]
    with pytest.raises(BadRequest, match="not among the tools"):
        parse_choice({"type": "function", "function": {"name": "nope"}}, tools)


def test_the_grammar_is_the_call_markers_around_a_list_of_the_tools():
    gbnf = calls_grammar(parse_tools([WEATHER, TIME]), required=False)
    assert gbnf.startswith('root ::= "<tool_call>" tool-calls "</tool_call>"')
    assert '"\\"get_weather\\""' in gbnf and '"\\"get_time\\""' in gbnf
    assert "tool-calls ::= " in gbnf and "\nroot ::= \"[\"" not in gbnf


# --- the grammar in llama.cpp itself (SmolLM2's vocabulary, no weights): what it lets through ---------

class Judge:
    """Whether llama.cpp's grammar sampler, built as the backend builds it, lets the model write a text:
    each of the text's tokens (then the end of the answer) is offered alone; a token the grammar rules
    out gets -inf."""

    def __init__(self):
        import llama_cpp

        from llmops.backend.model import default_model_path

        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(str(default_model_path()), vocab_only=True, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)

    def allows(self, gbnf: str, text: str, triggers: list[str] | None = None) -> bool:
        import ctypes

        import numpy as np

        from llmops.backend.grammar_sampler import _TOKEN_DATA, grammar_sampler

        lib = self.lib
        sampler = grammar_sampler(self.vocab, gbnf, triggers)
        cell = np.zeros(1, dtype=_TOKEN_DATA)
        arr = lib.llama_token_data_array(data=cell.ctypes.data_as(lib.llama_token_data_p), size=1, selected=-1,
                                         sorted=False)
        try:
            for token in [*self.llm.tokenize(text.encode(), add_bos=False, special=True), self.llm.token_eos()]:
                cell["id"], cell["logit"], arr.size = token, 0.0, 1
                lib.llama_sampler_apply(sampler, ctypes.byref(arr))
                if not np.isfinite(cell["logit"][0]):
                    return False
                if token != self.llm.token_eos():
                    lib.llama_sampler_accept(sampler, token)  # only an allowed token: llama.cpp aborts on others
            return True
        finally:
            lib.llama_sampler_free(sampler)


@pytest.fixture(scope="module")
def judge():
    return Judge()


def calls(*items: tuple[str, dict]) -> str:
    return CALL_OPEN + json.dumps([{"name": n, "arguments": a} for n, a in items]) + CALL_CLOSE


PARIS = {"city": "Paris", "unit": "celsius"}


def test_the_grammar_enforces_the_tools_names_and_argument_types(judge):
    gbnf = calls_grammar(parse_tools([WEATHER, TIME]), required=False)
    assert judge.allows(gbnf, calls(("get_weather", PARIS)))
    assert judge.allows(gbnf, calls(("get_weather", {**PARIS, "days": 3}), ("get_time", {"zone": "UTC"})))
    assert judge.allows(gbnf, "<tool_call>[]</tool_call>"), "auto: an empty list is a valid answer"
    assert not judge.allows(gbnf, calls(("func_name1", {"argument1": "value1"}))), "the template's example name"
    assert not judge.allows(gbnf, calls(("get_weather", {"city": "Paris", "unit": "kelvin"}))), "enum"
    assert not judge.allows(gbnf, calls(("get_weather", {**PARIS, "days": "three"}))), "integer"
    assert not judge.allows(gbnf, calls(("get_weather", {"city": "Paris"}))), "a required argument"
    assert not judge.allows(gbnf, calls(("get_time", PARIS))), "another tool's arguments"
    assert not judge.allows(gbnf, "The weather in Paris is nice."), "calls_only: no prose from the first token"
    assert not judge.allows(gbnf, calls(("get_weather", PARIS))[:-len(CALL_CLOSE)]), "the list must close"


def test_the_grammar_writes_the_name_before_the_arguments_as_the_template_shows():
    gbnf = calls_grammar(parse_tools([WEATHER]), required=False)
    item = next(line for line in gbnf.splitlines() if line.startswith("item ::="))
    assert item.index("item-name-kv") < item.index("item-arguments-kv"), item
    arguments = next(line for line in gbnf.splitlines() if line.startswith("item-arguments ::="))
    assert arguments.index("city") < arguments.index("unit") < arguments.index("days"), "the tool's own order"


def test_required_and_named_choices_in_the_grammar(judge):
    tools = parse_tools([WEATHER, TIME])
    required = calls_grammar(parse_choice("required", tools)[1], required=True)
    assert not judge.allows(required, "<tool_call>[]</tool_call>"), "required: at least one call"
    assert judge.allows(required, calls(("get_time", {"zone": "UTC"})))
    mode, chosen = parse_choice({"type": "function", "function": {"name": "get_time"}}, tools)
    named = calls_grammar(chosen, required=mode == "required")
    assert judge.allows(named, calls(("get_time", {"zone": "UTC"})))
    assert not judge.allows(named, calls(("get_weather", PARIS))), "only the named function"
    assert not judge.allows(named, "<tool_call>[]</tool_call>")


def test_tools_with_refs_into_their_own_defs_each_keep_their_own_definitions(judge):
    # pydantic (openai.pydantic_function_tool) writes nested models as $defs and "#/$defs/..." refs; two tools
    # with a $defs entry of the same name must not share one rule, and a recursive model still compiles.
    def tool(name, unit_enum):
        return {"type": "function", "function": {"name": name, "parameters": {
            "$defs": {"Unit": {"type": "string", "enum": unit_enum},
                      "Node": {"type": "object", "properties": {"label": {"type": "string"},
                                                                "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}},
                               "required": ["label", "next"]}},
            "type": "object", "properties": {"unit": {"$ref": "#/$defs/Unit"}, "path": {"$ref": "#/$defs/Node"}},
            "required": ["unit", "path"]}}}

    gbnf = calls_grammar(parse_tools([tool("heat", ["celsius"]), tool("length", ["metre"])]), required=True)
    path = {"label": "a", "next": {"label": "b", "next": None}}
    assert judge.allows(gbnf, calls(("heat", {"unit": "celsius", "path": path})))
    assert judge.allows(gbnf, calls(("length", {"unit": "metre", "path": path})))
    assert not judge.allows(gbnf, calls(("length", {"unit": "celsius", "path": path}))), "the other tool's Unit"
    assert not judge.allows(gbnf, calls(("heat", {"unit": "celsius", "path": {"label": "a"}}))), "Node needs next"


def test_the_lazy_grammar_lets_text_through_and_holds_from_the_call_marker_on(judge):
    gbnf = calls_grammar(parse_tools([WEATHER]), required=False)
    assert judge.allows(gbnf, "It is 12 C in Paris.", triggers=["<tool_call>"])
    assert judge.allows(gbnf, "Let me check. " + calls(("get_weather", PARIS)), triggers=["<tool_call>"])
    assert not judge.allows(gbnf, "Let me check. " + calls(("func_name1", {"argument1": "value1"})),
                            triggers=["<tool_call>"])


# --- /api/chat with tools (FakeEngine: scripted answers, grammar recorded, not applied) ------------

def test_show_lists_tools_and_the_tool_template(server):
    body = requests.post(server.url + "/api/show", json={"model": TAG}, timeout=10).json()
    assert body["capabilities"] == ["completion", "tools"]
    assert "<tool_call>" in body["template"] and ".Tools" in body["template"]


def test_a_call_comes_back_in_message_tool_calls(server):
    server.engine.answers = [CALL]
    body = chat(server, {"messages": ASK, "tools": [WEATHER]}).json()
    assert body["message"]["tool_calls"] == [
        {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]
    assert body["message"]["content"] == "" and body["done_reason"] == "stop" and body["done"] is True
    opts = server.engine.options[-1]
    assert opts.grammar.startswith("root ::=") and opts.grammar_triggers == []  # from the first token
    assert "<tools>" in server.engine.prompts[-1]


def test_a_streamed_call_is_one_chunk_then_the_end(server):
    server.engine.answers = [CALL]
    response = requests.post(server.url + "/api/chat", json={"model": TAG, "messages": ASK, "tools": [WEATHER]}, timeout=10)
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 2 and lines[0]["done"] is False and lines[1]["done"] is True
    assert lines[0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert lines[1]["done_reason"] == "stop" and lines[1]["eval_count"] > 0


def test_an_empty_call_list_is_answered_in_text_without_the_tools(server):
    server.engine.answers = ["<tool_call>[]</tool_call>", "Hello there"]
    body = chat(server, {"messages": [{"role": "user", "content": "Hi"}], "tools": [WEATHER]}).json()
    assert body["message"] == {"role": "assistant", "content": "Hello there"}
    assert "<tools>" not in server.engine.prompts[-1] and server.engine.options[-1].grammar == ""
    assert body["eval_count"] == 1 + 2  # both generations counted


def test_after_a_tool_result_the_grammar_is_lazy(server):
    server.engine.answers = ["It is 12 C in Paris."]
    messages = [*ASK, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
                {"role": "tool", "content": "12 C", "tool_name": "get_weather"}]
    body = chat(server, {"messages": messages, "tools": [WEATHER]}).json()
    assert body["message"]["content"] == "It is 12 C in Paris." and "tool_calls" not in body["message"]
    assert server.engine.options[-1].grammar_triggers == ["<tool_call>"]
    assert "<tool_response>\n12 C\n</tool_response>" in server.engine.prompts[-1]


def test_required_choice_forces_a_call_even_after_a_result(server):
    server.engine.answers = [CALL]
    messages = [*ASK, {"role": "tool", "content": "12 C"}]
    chat(server, {"messages": messages, "tools": [WEATHER], "tool_choice": "required"})
    opts = server.engine.options[-1]
    assert opts.grammar_triggers == [] and "tool-calls ::= \"[\" space item (" in opts.grammar


@pytest.mark.parametrize("body, fragment", [
    ({"tools": [{"type": "function", "function": {"parameters": {}}}]}, "tools[0].function.name is required"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "bogus"}}}}}]},
     "tool 'f'"),
    ({"tools": [WEATHER], "messages": [*ASK, {"role": "assistant", "tool_calls": [{"function": {"name": "get_weather", "arguments": "{city: Paris"}}]}]},
     "messages[1].tool_calls[0].function.arguments is not JSON"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}}, "not among the tools"),
    ({"tools": [{"type": "function", "function": {"name": "g", "parameters": {"type": "object", "properties": {"x": {"$ref": "#/nowhere"}}}}}]},
     "tool 'g' parameters: $ref '#/nowhere' leads nowhere"),
    *[({"tools": [WEATHER, tool]}, fragment) for tool, fragment in UNCOMPILABLE[::4]],
])
def test_bad_tool_input_is_400_and_the_backend_stays_up(server, body, fragment):
    response = chat(server, {"messages": ASK, **body})
    assert response.status_code == 400 and fragment in response.json()["error"]
    server.engine.answers = ["fine"]
    assert chat(server, {"messages": ASK}).json()["message"]["content"] == "fine"


def test_a_model_without_tools_answers_ollamas_400(tmp_path):
    engine = FakeEngine(tmp_path / "fake.gguf")
    with ServerThread(create_app(engine, max_queue=4)) as srv:
        response = requests.post(srv.url + "/api/chat", json={"model": engine.info.tag, "messages": ASK, "tools": [WEATHER]}, timeout=10)
        assert response.status_code == 400 and response.json() == {"error": f"{engine.info.tag} does not support tools"}


# --- /v1/chat/completions with tools (OpenAI's shape) ----------------------------------------------

def oai(server, body):
    return requests.post(server.url + "/v1/chat/completions", json={"model": TAG, **body}, timeout=10)


def test_openai_route_answers_calls_with_json_text_arguments_and_finish_reason_tool_calls(server):
    server.engine.answers = [CALL]
    body = oai(server, {"messages": ASK, "tools": [WEATHER]}).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert body["usage"]["completion_tokens"] > 0


def test_openai_route_streams_a_call_as_one_delta_then_the_finish(server):
    server.engine.answers = [CALL]
    response = oai(server, {"messages": ASK, "tools": [WEATHER], "stream": True, "stream_options": {"include_usage": True}})
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    assert response.text.rstrip().endswith("data: [DONE]")
    deltas = [d for e in events if e["choices"] for d in e["choices"][0]["delta"].get("tool_calls", [])]
    assert len(deltas) == 1 and deltas[0]["index"] == 0
    assert json.loads(deltas[0]["function"]["arguments"])["city"] == "Paris"
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == "tool_calls"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("choice, grammar_has, triggers", [
    ("required", "tool-calls ::= \"[\" space item (", []),
    ({"type": "function", "function": {"name": "get_time"}}, '"\\"get_time\\""', []),
])
def test_openai_tool_choice_forces_a_call(server, choice, grammar_has, triggers):
    server.engine.answers = ['<tool_call>[{"name": "get_time", "arguments": {"zone": "UTC"}}]</tool_call>']
    body = oai(server, {"messages": [*ASK, {"role": "tool", "content": "12 C"}], "tools": [WEATHER, TIME],
                        "tool_choice": choice}).json()
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    opts = server.engine.options[-1]
    assert grammar_has in opts.grammar and opts.grammar_triggers == triggers
    if isinstance(choice, dict):
        assert "get_weather" not in opts.grammar  # the named function alone


def test_openai_tool_choice_none_answers_in_text_without_the_tools(server):
    server.engine.answers = ["Hello there"]
    body = oai(server, {"messages": ASK, "tools": [WEATHER], "tool_choice": "none"}).json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello there"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert server.engine.options[-1].grammar == "" and "<tools>" not in server.engine.prompts[-1]


def test_openai_round_trip_renders_the_call_and_its_result(server):
    server.engine.answers = ["It is 12 C."]
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12 C"}]
    body = oai(server, {"messages": messages, "tools": [WEATHER]}).json()
    assert body["choices"][0]["message"]["content"] == "It is 12 C." and body["choices"][0]["finish_reason"] == "stop"
    prompt = server.engine.prompts[-1]
    assert '"arguments": {"city":"Paris","unit":"celsius"}' in prompt and "<tool_response>\n12 C\n</tool_response>" in prompt


@pytest.mark.parametrize("body, fragment", [
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools[0].function.name is required"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "bogus"}}}}}]},
     "tool 'f'"),
    ({"tools": [WEATHER], "messages": [*ASK, {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": "{oops"}}]}]},
     "arguments is not JSON"),
    ({"tool_choice": "required"}, "tool_choice needs tools"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice must be"),
    ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "response_format and tools cannot be combined"),
    *[({"tools": [tool, WEATHER]}, fragment) for tool, fragment in UNCOMPILABLE[1::4]],
])
def test_openai_bad_tool_input_is_a_400_in_openais_shape_and_the_backend_stays_up(server, body, fragment):
    response = oai(server, {"messages": ASK, **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert fragment in error["message"] and error["type"] == "invalid_request_error"
    server.engine.answers = ["fine"]
    assert oai(server, {"messages": ASK}).json()["choices"][0]["message"]["content"] == "fine"



# --- a streamed answer under the lazy grammar: text as it comes, a call held and sent whole ---------

def test_the_hold_sends_text_at_once_and_holds_what_could_open_a_call():
    from llmops.backend.toolparse import CallHold

    hold = CallHold()
    assert hold.feed("It is ") == "It is "
    assert hold.feed("warm <to") == "warm "  # "<to" could begin <tool_call>
    assert hold.feed("p>") == "<top>"  # it did not
    assert hold.feed(" then <tool_") == " then "
    assert hold.feed('call>[{"name": "x"') == "" and hold.opened
    assert hold.feed("}]</tool_call> more") == ""
    assert hold.held() == '<tool_call>[{"name": "x"}]</tool_call> more'


AFTER_RESULT = [*ASK, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
                {"role": "tool", "content": "12 C", "tool_name": "get_weather"}]


def ndjson(server, body):
    response = requests.post(server.url + "/api/chat", json={"model": TAG, "messages": AFTER_RESULT, "tools": [WEATHER], **body},
                             timeout=10)
    return [json.loads(line) for line in response.text.splitlines()]


def test_after_a_result_a_streamed_text_answer_streams_token_by_token(server):
    server.engine.answers = ["It is 12 C in Paris."]
    lines = ndjson(server, {})
    texts = [line["message"]["content"] for line in lines if not line["done"]]
    assert len(texts) == 6 and "".join(texts) == "It is 12 C in Paris."
    assert lines[-1]["done"] and lines[-1]["done_reason"] == "stop" and all("tool_calls" not in line["message"] for line in lines)
    assert server.engine.options[-1].grammar_triggers == ["<tool_call>"]


def test_after_a_result_text_streams_then_a_call_is_sent_whole(server):
    server.engine.answers = ["Let me look again. " + CALL]
    lines = ndjson(server, {})
    texts = "".join(line["message"]["content"] for line in lines if not line["done"])
    assert texts.strip() == "Let me look again." and "<tool" not in texts
    calls = [line["message"]["tool_calls"] for line in lines if line["message"].get("tool_calls")]
    assert calls == [[{"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]]
    assert lines[-1]["done"] and lines[-1]["done_reason"] == "stop"


def test_after_a_result_an_empty_list_streams_a_text_answer_instead(server):
    server.engine.answers = ["<tool_call>[]</tool_call>", "Nothing more to do."]
    lines = ndjson(server, {})
    assert "".join(line["message"]["content"] for line in lines) == "Nothing more to do."
    assert lines[-1]["eval_count"] == 1 + 4  # both generations counted
    assert "<tools>" not in server.engine.prompts[-1]


def test_after_a_result_a_call_cut_by_num_predict_comes_back_as_text(server):
    server.engine.answers = ['Checking <tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"']
    lines = ndjson(server, {"options": {"num_predict": 4}})
    text = "".join(line["message"]["content"] for line in lines)
    assert text.startswith("Checking <tool_call>") and lines[-1]["done_reason"] == "length"
    assert not any(line["message"].get("tool_calls") for line in lines)


def test_openai_route_after_a_result_streams_text_then_the_call_with_finish_tool_calls(server):
    server.engine.answers = ["Once more: " + CALL]
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "12 C"}]
    response = oai(server, {"messages": messages, "tools": [WEATHER], "stream": True})
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text.strip() == "Once more:"
    deltas = [d for e in events for d in e["choices"][0]["delta"].get("tool_calls", [])]
    assert [d["function"]["name"] for d in deltas] == ["get_weather"]
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"][0]["finish_reason"]] == ["tool_calls"]


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
def test_a_client_gone_mid_lazy_stream_stops_the_generation_and_frees_the_slot(tmp_path, path):
    import socket

    engine = FakeEngine(tmp_path / "smol.gguf", tag=TAG, info=tool_model(tmp_path), token_delay=0.005)
    with ServerThread(create_app(engine, max_queue=4)) as srv:
        body = json.dumps({"model": TAG, "messages": AFTER_RESULT, "tools": [WEATHER], "stream": True,
                           "options": {"num_predict": 100_000}, "max_tokens": 100_000}).encode()
        host, port = srv.url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        received = b""
        while b"w1" not in received:  # the text streams: the first token arrives long before the end
            received += sock.recv(4096)
        sock.close()
        wait_for(engine.finished.is_set, timeout=5, what="the generation to stop after the disconnect")
        assert engine.last_sampler.count < 1000
        engine.answers = ["fine"]
        after = requests.post(srv.url + "/api/chat", json={"model": TAG, "messages": ASK, "stream": False}, timeout=10)
        assert after.json()["message"]["content"] == "fine"


def test_api_chat_tool_choice_none_answers_in_text_without_the_tools(server):
    server.engine.answers = ["Hello there"]
    body = chat(server, {"messages": ASK, "tools": [WEATHER], "tool_choice": "none"}).json()
    assert body["message"] == {"role": "assistant", "content": "Hello there"}
    assert server.engine.options[-1].grammar == "" and "<tools>" not in server.engine.prompts[-1]


# --- resources: every path of a tool request gives its slot and its model back ---------------------

def _idle(srv, backend) -> bool:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(srv.url + "/metrics", timeout=5).text
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
              if s.name in ("llm_backend_in_flight", "llm_backend_slots_busy")}
    return values.get("llm_backend_in_flight") == 0 and values.get("llm_backend_slots_busy", 0) == 0 and all(
        loaded.running == 0 for loaded in backend.models.snapshot())


def _leave_after(srv, path: str, body: dict, marker: bytes) -> None:
    """Send body raw and hang up once marker has come (a client that goes mid-stream)."""
    import socket

    raw = json.dumps(body).encode()
    host, port = srv.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
        received = b""
        while marker not in received:
            received += sock.recv(4096)


LONG = "It is " + "very " * 400 + "warm."


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
@pytest.mark.parametrize("case, answers, extra, leave_at", [
    ("a call", [CALL], {}, None),
    ("a call, streamed", [CALL], {"stream": True}, None),
    ("[] then text", ["<tool_call>[]</tool_call>", "Hi"], {}, None),
    ("[] then text, streamed", ["<tool_call>[]</tool_call>", "Hi"], {"stream": True}, None),
    ("after a result, streamed", ["It is warm."], {"stream": True, "messages": AFTER_RESULT}, None),
    ("after a result, [] then text, streamed", ["<tool_call>[]</tool_call>", "Hi"],
     {"stream": True, "messages": AFTER_RESULT}, None),
    ("a call cut by the limit", [CALL], {"options": {"num_predict": 3}, "max_tokens": 3}, None),
    ("a bad schema", [], {"tools": [schema_tool("long", {"type": "string", "maxLength": 20_000})]}, None),
    ("client gone in the text after []", ["<tool_call>[]</tool_call>", LONG],
     {"stream": True, "messages": AFTER_RESULT}, b"very"),
])
def test_every_path_of_a_tool_request_gives_its_slot_and_model_back(tmp_path, path, case, answers, extra, leave_at):
    from llmops.backend.handling import BACKEND_KEY

    engine = FakeEngine(tmp_path / "smol.gguf", tag=TAG, info=tool_model(tmp_path), token_delay=0.002)
    app = create_app(engine, max_queue=4)
    with ServerThread(app) as srv:
        engine.answers = list(answers)
        body = {"model": TAG, "messages": ASK, "tools": [WEATHER], "stream": False, **extra}
        if leave_at is None:
            response = requests.post(srv.url + path, json=body, timeout=10)
            assert response.status_code == (400 if case == "a bad schema" else 200), response.text
        else:
            _leave_after(srv, path, body, leave_at)
        wait_for(lambda: _idle(srv, app[BACKEND_KEY]), timeout=5, what=f"{case}: the slot and the model given back")
        assert engine.answers == [], "every scripted generation ran"
        assert all(s.freed for s in engine.samplers)
        if leave_at is not None:
            assert engine.samplers[-1].count < LONG.count(" "), "the generation stopped when the client left"
        engine.answers = ["fine"]
        after = requests.post(srv.url + path, json={"model": TAG, "messages": ASK, "stream": False}, timeout=10).json()
        assert "fine" in json.dumps(after)


def test_api_generate_ignores_tools_as_ollama_does(server):
    # Ollama's GenerateRequest has no tools field: they are not an error there, and change nothing.
    server.engine.answers = ["Hello"]
    response = requests.post(server.url + "/api/generate", json={"model": TAG, "prompt": "Hi", "tools": [WEATHER],
                                                                 "stream": False}, timeout=10)
    assert response.status_code == 200 and response.json()["response"] == "Hello"
    assert server.engine.options[-1].grammar == "" and "<tools>" not in server.engine.prompts[-1]


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
def test_a_second_generation_that_fails_mid_stream_ends_the_stream_with_an_error_in_band(server, path):
    # After a tool result the text streams (headers sent); [] asks for a second generation, which fails here.
    tokenize = server.engine.tokenize

    def no_second(text: str) -> list[int]:
        if "<tools>" not in text:
            raise RuntimeError("no tokens for you")
        return tokenize(text)

    server.engine.tokenize = no_second
    server.engine.answers = ["<tool_call>[]</tool_call>"]
    response = requests.post(server.url + path, json={"model": TAG, "messages": AFTER_RESULT, "tools": [WEATHER],
                                                      "stream": True}, timeout=10)
    assert response.status_code == 200
    last = [line for line in response.text.splitlines() if line.strip()][-1]
    assert "generation failed: no tokens for you" in last, response.text
    server.engine.tokenize = tokenize
    server.engine.answers = ["fine"]
    assert chat(server, {"messages": ASK}).json()["message"]["content"] == "fine"
