"""A request's tools: checked, and turned into the grammar that only lets the model write valid calls.

The grammar is a JSON list of calls `{"name": N, "arguments": A}` inside the template's call markers,
where N is one of the tools' names and A validates against that tool's `parameters` schema; it is
built with the backend's JSON-schema grammar (structured.py), as llama.cpp's server does.
"""
from __future__ import annotations

import json
import re

from .options import BadRequest
from .structured import _schema_gbnf, check_schema
from .templates import CALL_CLOSE, CALL_OPEN

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
EMPTY_PARAMETERS = {"type": "object", "properties": {}}


def parse_tools(raw: object) -> list[dict]:
    """The request's `tools` as [{"type": "function", "function": {name, description, parameters}}]."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadRequest("tools must be a list")
    tools, seen = [], set()
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict):
            raise BadRequest(f"tools[{i}] must be an object")
        kind = tool.get("type", "function")
        if kind != "function":
            raise BadRequest(f"tools[{i}].type must be \"function\", not {kind!r}")
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise BadRequest(f"tools[{i}].function must be an object")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"tools[{i}].function.name is required")
        if not _NAME.match(name):
            raise BadRequest(f"tools[{i}].function.name {name!r} must be 1-128 letters, digits, _ . : or -")
        if name in seen:
            raise BadRequest(f"tools[{i}]: the tool name {name!r} is given twice")
        seen.add(name)
        description = fn.get("description", "")
        if not isinstance(description, str):
            raise BadRequest(f"tool {name!r}: description must be a string")
        params = fn.get("parameters")
        params = EMPTY_PARAMETERS if params is None else params
        where = f"tool {name!r} parameters"
        check_schema(params, where)
        if params.get("type", "object") != "object":
            raise BadRequest(f"{where} must be an object schema (\"type\": \"object\")")
        entry = {"name": name, "description": description, "parameters": params}
        tools.append({"type": "function", "function": entry})
    for tool in tools:
        # Compiled one by one, so that a schema the converter cannot take is named in the 400.
        calls_grammar([tool], required=True)
    return tools


def tool_names(tools: list[dict]) -> list[str]:
    return [t["function"]["name"] for t in tools]


def calls_schema(tools: list[dict], required: bool) -> dict:
    """The JSON schema of the call list: each item names one tool and carries arguments for it."""
    items = [{
        "type": "object",
        "properties": {"name": {"const": t["function"]["name"]}, "arguments": t["function"]["parameters"]},
        "required": ["name", "arguments"],
    } for t in tools]
    schema: dict = {"type": "array", "items": items[0] if len(items) == 1 else {"anyOf": items}}
    if required:
        schema["minItems"] = 1
    return schema


def calls_grammar(tools: list[dict], required: bool) -> str:
    """GBNF: `<tool_call>` + a JSON list of valid calls (at least one when required) + `</tool_call>`."""
    try:
        body = _schema_gbnf(json.dumps(calls_schema(tools, required), sort_keys=True))
    except (KeyError, ValueError, TypeError, NotImplementedError, RecursionError) as exc:
        names = ", ".join(repr(n) for n in tool_names(tools))
        raise BadRequest(f"unsupported JSON schema in tool {names} parameters: {exc}") from exc
    # The converter names the list's rule `root`; ours wraps it in the template's markers.
    body = re.sub(r"^root ::=", "tool-calls ::=", body, count=1, flags=re.M)
    return f"root ::= {json.dumps(CALL_OPEN)} tool-calls {json.dumps(CALL_CLOSE)}\n{body}"


def lazy_trigger() -> str:
    """The trigger of the lazy grammar: the call opens with the template's marker."""
    return CALL_OPEN


def parse_choice(raw: object, tools: list[dict]) -> tuple[str, list[dict]]:
    """OpenAI's tool_choice as (mode, tools offered): none, auto, required; a named function is required
    with that tool alone."""
    if raw is None or raw == "auto":
        return "auto", tools
    if raw == "none":
        return "none", []
    if raw == "required":
        return "required", tools
    if isinstance(raw, dict) and raw.get("type", "function") == "function" and isinstance(raw.get("function"), dict):
        name = raw["function"].get("name")
        chosen = [t for t in tools if t["function"]["name"] == name]
        if not chosen:
            raise BadRequest(f"tool_choice names {name!r}, which is not among the tools")
        return "required", chosen
    raise BadRequest('tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}')
