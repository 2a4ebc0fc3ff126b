"""Ollama's OpenAI-compatible subset: /v1/models and /v1/chat/completions."""
from __future__ import annotations

import asyncio
import json
import secrets
import time

from aiohttp import web

from .engine import Stats
from .handling import backend_of, begin, collect, stream_out
from .options import BadRequest, GenOptions, parse_stop
from .protocol import dumps, get_bool, json_response, parse_messages
from .structured import openai_response_format
from .toolchat import FirstAnswer, ToolPlan, add_stats, first_answer, parse_tool_messages, start_lazy
from .tools import parse_choice, parse_tools

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


def openai_tool_calls(calls: list[dict]) -> list[dict]:
    """Calls in OpenAI's shape: an id each, the arguments as JSON text."""
    return [{"id": f"call_{secrets.token_hex(12)}", "index": i, "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
            for i, c in enumerate(calls)]


async def chat_completions(request: web.Request) -> web.StreamResponse:
    arrived, backend, data, name, entry = await begin(request, need="chat")
    template = entry.info.tool_template
    messages = (parse_tool_messages(data.get("messages")) if template is not None
                else parse_messages(data.get("messages"), allow_parts=True))
    if not messages:
        raise BadRequest("messages must not be empty")
    if data.get("tools") and template is None:
        raise BadRequest(f"{name} does not support tools")
    mode, tools = parse_choice(data.get("tool_choice"), parse_tools(data.get("tools")))
    if data.get("tool_choice") not in (None, "none", "auto") and not tools:
        raise BadRequest("tool_choice needs tools")
    stream = get_bool(data, "stream", False)
    stream_options = data.get("stream_options") or {}
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    opts = openai_options(data)
    opts.grammar = openai_response_format(data.get("response_format"))
    if tools and opts.grammar:
        raise BadRequest("response_format and tools cannot be combined")
    keep_alive = backend.keep_alive({})
    ident, created = f"chatcmpl-{secrets.randbelow(1000)}", int(time.time())
    head = {"id": ident, "object": "chat.completion", "created": created, "model": name, "system_fingerprint": "fp_ollama"}
    chunk_head = {**head, "object": "chat.completion.chunk"}

    def event(obj: dict) -> bytes:
        return b"data: " + dumps(obj) + b"\n\n"

    first = lazy = None
    if tools and stream and (plan := ToolPlan(template, tools, mode, messages)).lazy:
        # The text streams as it comes; a call, once opened, is held and sent whole (toolchat.LazyCalls).
        lazy, _ = await start_lazy(backend, entry, plan, opts, arrived, keep_alive)
        gen = lazy
    elif tools:
        plan = ToolPlan(template, tools, mode, messages)
        first, _ = await first_answer(backend, entry, plan, opts, arrived, keep_alive)
        if not first.needs_text:
            return await _tool_answer(request, first, head, chunk_head, event, stream, include_usage)
        gen, _ = await backend.generate(entry, plan.text_options(opts), arrived, keep_alive, prompt=plan.text_prompt(),
                                    kind="chat")
    elif template is not None and any(m["role"] == "tool" or m.get("tool_calls") for m in messages):
        gen, _ = await backend.generate(entry, opts, arrived, keep_alive, prompt=template.render(messages, []), kind="chat")
    else:
        gen, _ = await backend.generate(entry, opts, arrived, keep_alive, messages=messages, kind="chat")

    def both(stats: Stats) -> Stats:
        return add_stats(first.stats, stats) if first is not None else stats

    if not stream:
        text, stats = await collect(gen)
        return json_response({
            **head,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": _finish(stats)}],
            "usage": _usage(both(stats)),
        })

    def piece(text: str) -> bytes:
        delta = {"role": "assistant", "content": text}
        return event({**chunk_head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})

    def final(stats: Stats) -> bytes:
        out, finish = b"", _finish(stats)
        if lazy is not None and (lazy.calls or lazy.held()):
            delta = {"role": "assistant", "content": lazy.held()}
            if lazy.calls:
                delta["tool_calls"], finish = openai_tool_calls(lazy.calls), "tool_calls"
            out = event({**chunk_head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        delta = {"role": "assistant", "content": ""}
        out += event({**chunk_head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        if include_usage:
            out += event({**chunk_head, "choices": [], "usage": _usage(both(stats))})
        return out + b"data: [DONE]\n\n"

    def error(message: str) -> bytes:
        return event({"error": {"message": message, "type": "api_error", "param": None, "code": None}})

    return await stream_out(request, gen, SSE, piece, final, error)


async def _tool_answer(request: web.Request, first: FirstAnswer, head: dict, chunk_head: dict, event, stream: bool,
                       include_usage: bool) -> web.StreamResponse:
    """The first generation's answer: calls (finish_reason tool_calls), or its text when it made none."""
    parsed, stats = first.parsed, first.stats
    calls = openai_tool_calls(parsed.calls) if parsed.calls else None
    text = parsed.content if calls else first.raw
    finish = "tool_calls" if calls else _finish(stats)
    if not stream:
        message: dict = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = calls
        return json_response({**head, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                              "usage": _usage(stats)})
    delta: dict = {"role": "assistant", "content": text}
    if calls:
        delta["tool_calls"] = calls
    out = event({**chunk_head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    out += event({**chunk_head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": finish}]})
    if include_usage:
        out += event({**chunk_head, "choices": [], "usage": _usage(stats)})
    response = web.StreamResponse(headers={"Content-Type": SSE})
    await response.prepare(request)
    await response.write(out + b"data: [DONE]\n\n")
    await response.write_eof()
    return response
