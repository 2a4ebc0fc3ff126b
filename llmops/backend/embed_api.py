"""Embeddings: Ollama's /api/embed and legacy /api/embeddings, and OpenAI's /v1/embeddings."""
from __future__ import annotations

import base64
import struct
import time

from aiohttp import web

from .handling import backend_of
from .options import BadRequest, parse_options
from .protocol import get_bool, get_str, json_response, model_name, read_json


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/embed", embed)
    app.router.add_post("/api/embeddings", embeddings)
    app.router.add_post("/v1/embeddings", openai_embeddings)


def _inputs(value: object, field: str = "input") -> list[str]:
    """A string or a list of strings; an empty string means no input (Ollama: a load request)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise BadRequest("invalid input type")


async def embed(request: web.Request) -> web.Response:
    arrived = time.perf_counter()
    backend = backend_of(request)
    data = await read_json(request)
    name = model_name(data)
    texts = _inputs(data.get("input"))
    truncate = get_bool(data, "truncate", True)
    parse_options(data.get("options"))  # checked and logged like a chat request's; none change a BERT pass
    dimensions = data.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 0):
        raise BadRequest("dimensions must be a positive integer")
    entry = backend.entry(name)
    vectors, count, load_seconds, waited = await backend.embed(entry, texts, truncate, backend.keep_alive(data))
    if dimensions:
        # Ollama cuts to the first `dimensions` values and normalises again.
        from .engine import l2_normalize

        vectors = [l2_normalize(v[:dimensions]) for v in vectors]
    return json_response({
        "model": name,
        "embeddings": vectors,
        "total_duration": int((time.perf_counter() - arrived) * 1e9),
        "load_duration": int((load_seconds + waited) * 1e9),
        "prompt_eval_count": count,
    })


async def embeddings(request: web.Request) -> web.Response:
    """The legacy endpoint: one `prompt`, one `embedding`."""
    backend = backend_of(request)
    data = await read_json(request)
    name = model_name(data)
    prompt = get_str(data, "prompt")
    parse_options(data.get("options"))
    entry = backend.entry(name)
    vectors, _count, _load, _waited = await backend.embed(entry, [prompt] if prompt else [], True, backend.keep_alive(data))
    return json_response({"embedding": vectors[0] if len(vectors) else []})


def _b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


async def openai_embeddings(request: web.Request) -> web.Response:
    backend = backend_of(request)
    data = await read_json(request)
    name = model_name(data)
    raw = data.get("input")
    if raw is None or raw == "" or raw == []:
        raise BadRequest("invalid input")
    texts = _inputs(raw)
    encoding = data.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise BadRequest("encoding_format must be float or base64")
    entry = backend.entry(name)
    vectors, count, _load, _waited = await backend.embed(entry, texts, True, backend.keep_alive({}))
    dimensions = data.get("dimensions")
    if isinstance(dimensions, int) and not isinstance(dimensions, bool) and dimensions > 0:
        from .engine import l2_normalize

        vectors = [l2_normalize(v[:dimensions]) for v in vectors]
    items = [
        {"object": "embedding", "embedding": _b64(v) if encoding == "base64" else v, "index": i}
        for i, v in enumerate(vectors)
    ]
    return json_response({
        "object": "list", "data": items, "model": name,
        "usage": {"prompt_tokens": count, "total_tokens": count},
    })
