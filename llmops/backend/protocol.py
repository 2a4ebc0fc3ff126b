"""Request parsing and response helpers shared by the Ollama and OpenAI routes."""
from __future__ import annotations

import json

import orjson
from aiohttp import web

from .options import BadRequest

# The Ollama release whose API shapes these routes follow; clients only display it.
OLLAMA_VERSION = "0.12.0"


class ModelNotFound(LookupError):
    """The request names a model this backend does not serve; answered 404."""


_ORJSON_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(obj: object) -> bytes:
    """Compact UTF-8 JSON. orjson writes an embedding's floats much faster than json.dumps (docs/backend.md),
    and numpy float32 arrays as Ollama's float32 values, shortest form."""
    return orjson.dumps(obj, option=_ORJSON_OPTS)


def json_response(obj: object, status: int = 200) -> web.Response:
    return web.Response(body=dumps(obj), status=status, content_type="application/json")


async def read_json(request: web.Request) -> dict:
    """The request body as a JSON object; anything else raises BadRequest."""
    body = await request.read()
    if not body.strip():
        raise BadRequest("missing request body")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def normalize_name(name: str) -> str:
    """Ollama's model-name rules: the default registry prefix and the `latest` tag are implied."""
    name = name.strip().lower()
    for prefix in ("registry.ollama.ai/library/", "library/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name if ":" in name else f"{name}:latest"


def require_model(data: dict, served: str, key: str = "model") -> str:
    """The requested model name; 400 when missing, ModelNotFound when not the served one."""
    name = data.get(key) or (data.get("name") if key == "model" else None)
    if not name:
        raise BadRequest("model is required")
    if not isinstance(name, str):
        raise BadRequest("model must be a string")
    if normalize_name(name) != normalize_name(served):
        raise ModelNotFound(name)
    return name


def _typed(data: dict, key: str, default, kind: type, words: str):
    """data[key] if it is a `kind`; missing or null gives the default; anything else is a 400 naming the key."""
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise BadRequest(f"{key} must be {words}")
    return value


def get_bool(data: dict, key: str, default: bool) -> bool:
    return _typed(data, key, default, bool, "true or false")


def get_str(data: dict, key: str, default: str = "") -> str:
    return _typed(data, key, default, str, "a string")


def parse_messages(raw: object, allow_parts: bool = False) -> list[dict]:
    """Chat messages as {"role", "content"} dicts for the chat template."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadRequest("messages must be a list")
    messages = []
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a string role")
        content = msg.get("content")
        if content is None:
            content = ""
        elif isinstance(content, list) and allow_parts:
            # OpenAI content parts: keep the text, there is no vision here.
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        elif not isinstance(content, str):
            raise BadRequest(f"messages[{i}].content must be a string")
        if msg.get("images"):
            raise BadRequest("this model does not support images")
        messages.append({"role": msg["role"], "content": content})
    return messages


def model_name(data: dict, key: str = "model") -> str:
    """The requested model name (Ollama also reads `name`); 400 when missing or not a string."""
    name = data.get(key) or (data.get("name") if key == "model" else None)
    if not name:
        raise BadRequest("model is required")
    if not isinstance(name, str):
        raise BadRequest("model must be a string")
    return name
