"""A request's tools: checked, and turned into the grammar that only lets the model write valid calls.

The grammar is a JSON list of calls `{"name": N, "arguments": A}` inside the template's call markers,
where N is one of the tools' names and A validates against that tool's `parameters` schema; it is
built with the backend's JSON-schema grammar (structured.py), as llama.cpp's server does.
"""
from __future__ import annotations

import json
import re

from .options import BadRequest
from .structured import _schema_gbnf, check_compiles, check_schema
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


def _refs(node: object) -> list[str]:
    """Every `$ref` in a schema."""
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _target(schema: dict, ref: str) -> object:
    """What a local `$ref` ("#/a/b", a JSON pointer) names inside the schema; None when nothing."""
    target: object = schema
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            return None
        target = target[part]
    return target if isinstance(target, dict) else None


def _rewritten(node: object, names: dict[str, str]) -> object:
    """The schema with each `$ref` replaced by `#/$defs/<its new name>`."""
    if isinstance(node, dict):
        out = {key: _rewritten(value, names) for key, value in node.items()}
        if isinstance(node.get("$ref"), str):
            out["$ref"] = "#/$defs/" + names[node["$ref"]]
        return out
    if isinstance(node, list):
        return [_rewritten(value, names) for value in node]
    return node


def calls_schema(tools: list[dict], required: bool) -> dict:
    """The JSON schema of the call list: each item names one tool and carries arguments for it.

    A tool's parameters may hold `$ref`s into themselves (pydantic writes `$defs` and `#/$defs/...`); inside
    the list's schema their root is elsewhere, and the converter names a ref's rule by its last segment
    (two tools' `#/$defs/Unit` would share one rule). So each ref's target goes into the list's `$defs`
    under a name of its own (`t<i>-<the ref>`), and the refs point there."""
    defs: dict = {}
    items = []
    for i, t in enumerate(tools):
        params = t["function"]["parameters"]
        refs = sorted(set(_refs(params)))
        if refs:
            names = {ref: f"t{i}-" + re.sub(r"[^A-Za-z0-9]+", "-", ref).strip("-") for ref in refs}
            for ref in refs:
                defs[names[ref]] = _rewritten(_target(params, ref), names)
            params = _rewritten(params, names)
        items.append({
            "type": "object",
            "properties": {"name": {"const": t["function"]["name"]}, "arguments": params},
            "required": ["name", "arguments"],
        })
    schema: dict = {"type": "array", "items": items[0] if len(items) == 1 else {"anyOf": items}}
    if required:
        schema["minItems"] = 1
    if defs:
        schema["$defs"] = defs
    return schema


def calls_grammar(tools: list[dict], required: bool) -> str:
    """GBNF: `<tool_call>` + a JSON list of valid calls (at least one when required) + `</tool_call>`."""
    names = ", ".join(repr(n) for n in tool_names(tools))
    for t in tools:
        where = f"tool {t['function']['name']!r} parameters"
        for ref in _refs(t["function"]["parameters"]):
            if not ref.startswith("#"):
                raise BadRequest(f"unsupported JSON schema in {where}: only local $ref (\"#/...\") is supported, "
                                 f"not {ref[:80]!r}")
            if _target(t["function"]["parameters"], ref) is None:
                raise BadRequest(f"invalid JSON schema in {where}: $ref {ref[:80]!r} leads nowhere in the schema")
    try:
        # Not sorted: the converter writes an object's properties in the schema's order, so the call reads
        # "name" before "arguments" (the template's form: the model names the tool, then fills its
        # arguments) and each tool's parameters come in the order the tool gives them.
        body = _schema_gbnf(json.dumps(calls_schema(tools, required)))
    except (KeyError, ValueError, TypeError, NotImplementedError, RecursionError, AssertionError) as exc:
        # The converter asserts on what it cannot take (a $ref that leads nowhere, among others).
        raise BadRequest(f"unsupported JSON schema in tool {names} parameters: {exc}") from exc
    # The converter names the list's rule `root`; ours wraps it in the template's markers.
    body = re.sub(r"^root ::=", "tool-calls ::=", body, count=1, flags=re.M)
    return check_compiles(f"root ::= {json.dumps(CALL_OPEN)} tool-calls {json.dumps(CALL_CLOSE)}\n{body}",
                          f"tool {names} parameters")


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
