"""Structured outputs: Ollama's `format` and OpenAI's `response_format` as llama.cpp grammars."""
from __future__ import annotations

import functools
import json

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


def check_schema(schema: object, where: str) -> dict:
    """A JSON schema the grammar converter can take; BadRequest naming the problem otherwise."""
    import jsonschema

    if not isinstance(schema, dict):
        raise BadRequest(f"{where} must be \"json\" or a JSON schema object")
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise BadRequest(f"invalid JSON schema in {where}: {exc.message}") from exc
    return schema


def schema_grammar(schema: dict, where: str) -> str:
    """The GBNF grammar that only lets the model write JSON valid against schema."""
    check_schema(schema, where)
    try:
        return _schema_gbnf(json.dumps(schema, sort_keys=True))
    except (KeyError, ValueError, TypeError, NotImplementedError, RecursionError, AssertionError) as exc:
        # The converter asserts on what it cannot take (a $ref that leads nowhere, a remote one).
        raise BadRequest(f"unsupported JSON schema in {where}: {exc}") from exc


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
