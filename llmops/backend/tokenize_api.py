"""POST /api/tokenize: the served model's tokenizer over HTTP, an extension (Ollama has no such route).

The shape follows the proposals for Ollama (PRs #7412, #12030, #16820: `{"model", "content"}` to
`{"tokens"}`) and llama.cpp's server (`add_special`, default false; special-token text is parsed), with one
addition: `content` may be a list of strings, answered with a list of token lists, so a client counts many
texts in one call. A tokenizer is a vocabulary-only load of the model's GGUF (no weights, no context, no
KV cache), kept for the next request and run on a worker thread: tokenizing never takes a slot, never waits
behind decode steps and never loads the model itself (docs/backend.md: how, and what it costs).
"""
from __future__ import annotations

import asyncio
import time

from aiohttp import web

from .handling import backend_of
from .options import BadRequest
from .protocol import get_bool, json_response, model_name, read_json


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/tokenize", tokenize)


def _texts(data: dict) -> tuple[list[str], bool]:
    """The texts to tokenize and whether one string (not a list) was sent."""
    content = data.get("content")
    if isinstance(content, str):
        return [content], True
    if isinstance(content, list):
        for i, text in enumerate(content):
            if not isinstance(text, str):
                raise BadRequest(f"content[{i}] must be a string, not {type(text).__name__}")
        return content, False
    if content is None:
        raise BadRequest("content is required: a string or a list of strings")
    raise BadRequest(f"content must be a string or a list of strings, not {type(content).__name__}")


async def tokenize(request: web.Request) -> web.Response:
    arrived = time.perf_counter()
    backend = backend_of(request)
    data = await read_json(request)
    name = model_name(data)
    texts, single = _texts(data)
    add_special = get_bool(data, "add_special", False)
    entry = backend.entry(name)
    tokens, load_seconds = await asyncio.get_running_loop().run_in_executor(
        None, backend.tokenizers.tokenize, entry, texts, add_special)
    return json_response({
        "model": name,
        "tokens": tokens[0] if single else tokens,
        "total_duration": int((time.perf_counter() - arrived) * 1e9),
        "load_duration": int(load_seconds * 1e9),
    })
