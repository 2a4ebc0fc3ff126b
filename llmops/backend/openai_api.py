"""Ollama's OpenAI-compatible subset: /v1/models and /v1/chat/completions."""
from __future__ import annotations

import asyncio
import secrets
import time

from aiohttp import web

from .engine import Stats
from .handling import backend_of, begin, collect, stream_out
from .options import BadRequest, GenOptions, parse_stop
from .protocol import dumps, get_bool, json_response, parse_messages
from .structured import openai_response_format

SSE = "text/event-stream"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat_completions)


async def models(request: web.Request) -> web.Response:
    registry = backend_of(request).registry
    entries = await asyncio.get_running_loop().run_in_executor(None, registry.entries)
    data = [{"id": e.tag, "object": "model", "created": int(e.path.stat().st_mtime), "owned_by": "library"} for e in entries]
    return json_response({"object": "list", "data": data})


def _number(data: dict, key: str, kind: type) -> float | int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise BadRequest(f"{key} must be {'an integer' if kind is int else 'a number'}")
    return kind(value)


def openai_options(data: dict) -> GenOptions:
    """OpenAI request fields as Ollama options; like Ollama, temperature and top_p default to 1."""
    opts = GenOptions(temperature=1.0, top_p=1.0)
    max_tokens = _number(data, "max_completion_tokens", int) or _number(data, "max_tokens", int)
    if max_tokens:
        opts.num_predict = max_tokens
    for key, field, kind in (
        ("temperature", "temperature", float), ("top_p", "top_p", float), ("seed", "seed", int),
        ("frequency_penalty", "frequency_penalty", float), ("presence_penalty", "presence_penalty", float),
    ):
        value = _number(data, key, kind)
        if value is not None:
            setattr(opts, field, value)
    if opts.temperature < 0:
        raise BadRequest("temperature must not be negative")
    if data.get("stop") is not None:
        opts.stop = parse_stop(data["stop"])
    return opts


def _usage(stats: Stats) -> dict:
    return {
        "prompt_tokens": stats.prompt_eval_count,
        "completion_tokens": stats.eval_count,
        "total_tokens": stats.prompt_eval_count + stats.eval_count,
    }


def _finish(stats: Stats) -> str:
    return "length" if stats.done_reason == "length" else "stop"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    arrived, backend, data, name, entry = await begin(request, need="chat")
    messages = parse_messages(data.get("messages"), allow_parts=True)
    if not messages:
        raise BadRequest("messages must not be empty")
    if data.get("tools"):
        raise BadRequest(f"{name} does not support tools")
    stream = get_bool(data, "stream", False)
    stream_options = data.get("stream_options") or {}
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    opts = openai_options(data)
    opts.grammar = openai_response_format(data.get("response_format"))
    gen, _ = await backend.generate(entry, opts, arrived, backend.keep_alive({}), messages=messages, kind="chat")
    ident, created = f"chatcmpl-{secrets.randbelow(1000)}", int(time.time())
    head = {"id": ident, "object": "chat.completion", "created": created, "model": name, "system_fingerprint": "fp_ollama"}

    if not stream:
        text, stats = await collect(gen)
        return json_response({
            **head,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": _finish(stats)}],
            "usage": _usage(stats),
        })

    chunk_head = {**head, "object": "chat.completion.chunk"}

    def event(obj: dict) -> bytes:
        return b"data: " + dumps(obj) + b"\n\n"

    def piece(text: str) -> bytes:
        delta = {"role": "assistant", "content": text}
        return event({**chunk_head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})

    def final(stats: Stats) -> bytes:
        delta = {"role": "assistant", "content": ""}
        out = event({**chunk_head, "choices": [{"index": 0, "delta": delta, "finish_reason": _finish(stats)}]})
        if include_usage:
            out += event({**chunk_head, "choices": [], "usage": _usage(stats)})
        return out + b"data: [DONE]\n\n"

    def error(message: str) -> bytes:
        return event({"error": {"message": message, "type": "api_error", "param": None, "code": None}})

    return await stream_out(request, gen, SSE, piece, final, error)
