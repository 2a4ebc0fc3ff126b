"""Structured outputs: Ollama's `format` and OpenAI's `response_format` as llama.cpp grammars."""
from __future__ import annotations

import functools
import json
import re

from .options import BadRequest


@functools.lru_cache(maxsize=1)
def _json_gbnf() -> str:
    from llama_cpp.llama_grammar import JSON_GBNF

    return JSON_GBNF


# llama-cpp-python 0.3.36's schema converter lets a string hold raw control characters (a tab, a
# newline), which JSON forbids: json.loads rejected such answers. Its own JSON_GBNF (and llama.cpp's
# newer converter) exclude them; so do we.
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


@functools.lru_cache(maxsize=64)
def _schema_gbnf(schema_text: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(schema_text).replace(_LOOSE_CHAR, _STRICT_CHAR)


# The converter writes a bound such as maxLength: n or maxItems: n as n nested optional groups (a min
# bound as n copies), in Python, on the event loop; llama.cpp's grammar parser then recurses once per
# group. Measured with llama-cpp-python 0.3.36: it refuses a grammar past about 1,000 levels ("exceeds
# sane defaults") and crashes the process (a stack overflow) past about 19,000; maxLength: 10**9 would
# fill the memory before that. So a bound over MAX_BOUND is a 400 before anything is built, and a
# grammar deeper than MAX_GRAMMAR_DEPTH (whatever made it) is refused before llama.cpp reads it.
MAX_BOUND = 1000
MAX_GRAMMAR_DEPTH = 2000
_BOUNDS = ("maxLength", "minLength", "maxItems", "minItems")
_QUANTIFIER = re.compile(r"\{(\d+)(?:,(\d*))?\}")


_VALUES = ("const", "enum", "default", "examples")  # JSON values, not schemas: their keys are data


def _bound_problem(node: object, path: str = "") -> str:
    """The first length or count bound in a schema that the grammar cannot hold: too large, or a minimum
    over its maximum (no answer could satisfy it: the generation would stop with no token allowed)."""
    if isinstance(node, dict):
        where = path or "/"
        for key in _BOUNDS:
            value = node.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_BOUND:
                return (f"{key}: {value} at {where} is more than the grammar can bound ({MAX_BOUND} at most: "
                        "llama.cpp's grammar parser refuses deeper grammars); lower it or leave it out")
        for low, high in (("minLength", "maxLength"), ("minItems", "maxItems")):
            if isinstance(node.get(low), int) and isinstance(node.get(high), int) and node[low] > node[high]:
                return f"{low}: {node[low]} is more than {high}: {node[high]} at {where}: no value fits"
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            for found in _QUANTIFIER.finditer(pattern):
                if any(part and int(part) > MAX_BOUND for part in found.groups()):
                    return (f"the pattern's {found.group(0)} at {where} is more than the grammar can bound "
                            f"({MAX_BOUND} at most); lower it")
        items = [(key, value) for key, value in node.items() if key not in _VALUES]
    elif isinstance(node, list):
        items = [(str(i), value) for i, value in enumerate(node)]
    else:
        return ""
    for key, value in items:
        if isinstance(value, (dict, list)):
            found = _bound_problem(value, f"{path}/{key}")
            if found:
                return found
    return ""


def grammar_depth(gbnf: str) -> int:
    """How deep the grammar's groups nest: parentheses outside literals, character classes and comments."""
    depth = deepest = 0
    i, n = 0, len(gbnf)
    while i < n:
        ch = gbnf[i]
        if ch in "\"[":
            close = '"' if ch == '"' else "]"
            i += 1
            while i < n and gbnf[i] != close:
                i += 2 if gbnf[i] == "\\" else 1
        elif ch == "#":
            while i < n and gbnf[i] != "\n":
                i += 1
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
        i += 1
    return deepest


@functools.lru_cache(maxsize=64)
def _compile_problem(gbnf: str) -> str:
    """"" when llama.cpp's grammar parser takes gbnf, else why not (checked without a model's vocabulary)."""
    import llama_cpp

    from .grammar_sampler import grammar_sampler

    depth = grammar_depth(gbnf)
    if depth > MAX_GRAMMAR_DEPTH:
        return (f"its grammar nests {depth} levels deep (a maxLength, maxItems or {{m,n}} bound that large), "
                f"more than llama.cpp's grammar parser takes ({MAX_GRAMMAR_DEPTH})")
    try:
        llama_cpp.llama_sampler_free(grammar_sampler(None, gbnf))
    except ValueError:
        return ("llama.cpp cannot compile the grammar made from it (for example a pattern with \\w, \\d or a "
                "back-reference, a property name with a quote, an empty enum, or a bound over about 1,000)")
    return ""


def check_compiles(gbnf: str, where: str) -> str:
    """gbnf when llama.cpp will take it; else the 400 naming `where`, before any slot is taken (a grammar
    that fails there would end the generation with a 500, and one that nests too deep crashes the process)."""
    problem = _compile_problem(gbnf)
    if problem:
        raise BadRequest(f"unsupported JSON schema in {where}: {problem}")
    return gbnf


def check_schema(schema: object, where: str) -> dict:
    """A JSON schema the grammar converter can take; BadRequest naming the problem otherwise."""
    import jsonschema

    if not isinstance(schema, dict):
        raise BadRequest(f"{where} must be \"json\" or a JSON schema object")
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise BadRequest(f"invalid JSON schema in {where}: {exc.message}") from exc
    problem = _bound_problem(schema)
    if problem:
        raise BadRequest(f"unsupported JSON schema in {where}: {problem}")
    return schema


def schema_grammar(schema: dict, where: str) -> str:
    """The GBNF grammar that only lets the model write JSON valid against schema."""
    check_schema(schema, where)
    try:
        gbnf = _schema_gbnf(json.dumps(schema, sort_keys=True))
    except (KeyError, ValueError, TypeError, NotImplementedError, RecursionError, AssertionError) as exc:
        # The converter asserts on what it cannot take (a $ref that leads nowhere, a remote one).
        raise BadRequest(f"unsupported JSON schema in {where}: {exc}") from exc
    return check_compiles(gbnf, where)


def ollama_format(value: object) -> str:
    """Ollama's `format`: "" (none), "json", or a JSON schema object."""
    if value is None or value == "":
        return ""
    if value == "json":
        return _json_gbnf()
    if isinstance(value, str):
        # Ollama accepts a schema sent as a JSON string too.
        try:
            value = json.loads(value)
        except ValueError:
            raise BadRequest(f'invalid format: {value!r} (use "json" or a JSON schema)') from None
    return schema_grammar(value, "format")


def openai_response_format(value: object) -> str:
    """OpenAI's response_format: text, json_object or json_schema ({"schema": ...})."""
    if value is None:
        return ""
    if not isinstance(value, dict):
        raise BadRequest("response_format must be an object")
    kind = value.get("type")
    if kind in (None, "text"):
        return ""
    if kind == "json_object":
        return _json_gbnf()
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise BadRequest("response_format.json_schema.schema is required")
        return schema_grammar(spec["schema"], "response_format.json_schema.schema")
    raise BadRequest(f"response_format.type must be text, json_object or json_schema, not {kind!r}")
