"""Ollama's native API: /api/version, tags, ps, show, generate and chat, field by field."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiohttp import web

from .engine import Stats
from .handling import backend_of, begin, collect, stream_out
from .model import now_rfc3339
from .options import BadRequest, GenOptions, parse_options
from .protocol import (
    OLLAMA_VERSION,
    dumps,
    get_bool,
    get_str,
    json_response,
    parse_messages,
    read_json,
)
from .scheduler import Generation
from .structured import ollama_format
from .toolchat import ToolPlan, add_stats, first_answer, parse_tool_messages, start_lazy
from .tools import parse_choice, parse_tools

NDJSON = "application/x-ndjson"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/api/ps", ps)
    app.router.add_post("/api/show", show)
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/chat", chat)


async def version(request: web.Request) -> web.Response:
    return json_response({"version": OLLAMA_VERSION})


async def tags(request: web.Request) -> web.Response:
    registry = backend_of(request).registry
    # Listing reads file headers and (once per file) hashes them: off the event loop.
    entries = await asyncio.get_running_loop().run_in_executor(None, lambda: [e.info.tag_entry() for e in registry.entries()])
    return json_response({"models": entries})


async def ps(request: web.Request) -> web.Response:
    backend = backend_of(request)
    models = []
    for loaded in backend.models.snapshot():
        engine = loaded.engine
        models.append(loaded.entry.info.ps_entry(
            backend.models.expires_text(loaded),
            size=getattr(engine, "memory_bytes", 0) or loaded.entry.info.size,
            context_length=engine.n_ctx,
        ))
    return json_response({"models": models})


async def show(request: web.Request) -> web.Response:
    backend = backend_of(request)
    data = await read_json(request)
    name = data.get("model") or data.get("name")
    if not name:
        raise BadRequest("model is required")
    if not isinstance(name, str):
        raise BadRequest("model must be a string")
    try:
        entry = backend.registry.get(name)
    except LookupError:
        return json_response({"error": f"model '{name}' not found"}, 404)
    info = entry.info
    defaults = GenOptions()
    params = {"num_ctx": backend.models.num_ctx_for(info)}
    if not info.is_embedding:
        params.update(temperature=defaults.temperature, top_k=defaults.top_k, top_p=defaults.top_p,
                      repeat_penalty=defaults.repeat_penalty)
    text = "\n".join(f"{key:<30} {value}" for key, value in params.items())
    return json_response(info.show(text))


def _timings(stats: Stats, arrived: float, waited: float) -> dict:
    """The final object's counts and nanosecond durations, as Ollama names them."""
    return {
        "total_duration": int((time.perf_counter() - arrived) * 1e9),
        "load_duration": int(waited * 1e9) + stats.load_ns,
        "prompt_eval_count": stats.prompt_eval_count,
        "prompt_eval_duration": stats.prompt_eval_ns,
        "eval_count": stats.eval_count,
        "eval_duration": stats.eval_ns,
    }


def _reject_unsupported(data: dict, tag: str, tools_ok: bool = False) -> None:
    if data.get("tools") and not tools_ok:
        raise BadRequest(f"{tag} does not support tools")
    if data.get("think") is True:
        raise BadRequest(f'"{tag}" does not support thinking')
    if data.get("suffix"):
        raise BadRequest(f"{tag} does not support insert")
    if data.get("images"):
        raise BadRequest(f"{tag} does not support images")


async def _reply(request: web.Request, gen: Generation, stream: bool, final: Callable[..., dict],
                 piece: Callable[[str], dict]) -> web.StreamResponse:
    """Ollama's answer: the final body alone, or NDJSON lines (each piece, then the final body or an error)."""
    if not stream:
        text, stats = await collect(gen)
        return json_response(final(stats, text))
    return await stream_out(
        request, gen, NDJSON,
        piece=lambda text: dumps(piece(text)) + b"\n",
        final=lambda stats: dumps(final(stats)) + b"\n",
        error=lambda message: dumps({"error": message}) + b"\n",
    )


async def _empty(backend, entry, name: str, keep_alive: float, body: dict) -> web.Response:
    """Ollama's answer to a request with nothing to generate: load the model, or with keep_alive 0 unload it."""
    arrived = time.perf_counter()
    if keep_alive == 0:
        await backend.unload(entry.tag)
        return json_response({"model": name, "created_at": now_rfc3339(), **body, "done": True, "done_reason": "unload"})
    seconds = await backend.load_only(entry, keep_alive)
    return json_response({
        "model": name, "created_at": now_rfc3339(), **body, "done": True, "done_reason": "load",
        "total_duration": int((time.perf_counter() - arrived) * 1e9), "load_duration": int(seconds * 1e9),
    })


async def generate(request: web.Request) -> web.StreamResponse:
    arrived, backend, data, name, entry = await begin(request, need="generate")
    # Ollama's GenerateRequest has no `tools`: a client that sends them there has them ignored, as there.
    _reject_unsupported(data, name, tools_ok=True)
    prompt = get_str(data, "prompt")
    system = get_str(data, "system")
    raw = get_bool(data, "raw", False)
    stream = get_bool(data, "stream", True)
    opts = parse_options(data.get("options"))
    opts.grammar = ollama_format(data.get("format"))
    keep_alive = backend.keep_alive(data)
    context = data.get("context") or []
    if not isinstance(context, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in context):
        raise BadRequest("context must be a list of integers")
    if not prompt and not context:
        return await _empty(backend, entry, name, keep_alive, {"response": ""})
    messages = None
    if not raw:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    gen, waited = await backend.generate(entry, opts, arrived, keep_alive, prompt=prompt, messages=messages,
                                         prefix=context, kind="generate")

    def final(stats: Stats, text: str = "") -> dict:
        body = {"model": name, "created_at": now_rfc3339(), "response": text, "done": True, "done_reason": stats.done_reason}
        if not raw:
            body["context"] = stats.input_tokens + stats.output_tokens
        body.update(_timings(stats, arrived, waited))
        return body

    return await _reply(request, gen, stream, final,
                        piece=lambda text: {"model": name, "created_at": now_rfc3339(), "response": text, "done": False})


def ollama_tool_calls(calls: list[dict]) -> list[dict]:
    """Calls as Ollama's message.tool_calls: the function's name and its arguments as an object."""
    return [{"function": {"index": i, "name": c["name"], "arguments": c["arguments"]}} for i, c in enumerate(calls)]


async def chat(request: web.Request) -> web.StreamResponse:
    arrived, backend, data, name, entry = await begin(request, need="chat")
    template = entry.info.tool_template
    _reject_unsupported(data, name, tools_ok=template is not None)
    tools = parse_tools(data.get("tools"))
    stream = get_bool(data, "stream", True)
    opts = parse_options(data.get("options"))
    keep_alive = backend.keep_alive(data)
    if tools:
        # tool_choice is OpenAI's; the proxy's plug-in carries it here (Ollama itself has none).
        mode, tools = parse_choice(data.get("tool_choice"), tools)
        messages = parse_tool_messages(data.get("messages"))
        if data.get("format"):
            raise BadRequest("format and tools cannot be combined")
        if messages and tools:
            return await _tool_chat(request, ToolPlan(template, tools, mode, messages), name, entry, opts, stream,
                                    arrived, keep_alive)
    else:
        messages = parse_tool_messages(data.get("messages")) if template is not None else parse_messages(data.get("messages"))
    opts.grammar = ollama_format(data.get("format"))
    if not messages:
        return await _empty(backend, entry, name, keep_alive, {"message": {"role": "assistant", "content": ""}})
    if template is not None and any(m["role"] == "tool" or m.get("tool_calls") for m in messages):
        # A conversation with calls and results renders through the tool template even without tools.
        gen, waited = await backend.generate(entry, opts, arrived, keep_alive, prompt=template.render(messages, []),
                                             kind="chat")
    else:
        gen, waited = await backend.generate(entry, opts, arrived, keep_alive, messages=messages, kind="chat")

    def final(stats: Stats, text: str = "") -> dict:
        body = {
            "model": name, "created_at": now_rfc3339(), "message": {"role": "assistant", "content": text},
            "done_reason": stats.done_reason, "done": True,
        }
        body.update(_timings(stats, arrived, waited))
        return body

    return await _reply(request, gen, stream, final, piece=lambda text: {
        "model": name, "created_at": now_rfc3339(), "message": {"role": "assistant", "content": text}, "done": False,
    })


async def _tool_chat(request: web.Request, plan: ToolPlan, name: str, entry, opts: GenOptions, stream: bool,
                     arrived: float, keep_alive: float) -> web.StreamResponse:
    """/api/chat with tools (toolchat): the calls in message.tool_calls, or a text answer."""
    backend = backend_of(request)
    lazy = None
    if stream and plan.lazy:
        lazy, waited = await start_lazy(backend, entry, plan, opts, arrived, keep_alive)
    else:
        answer, waited = await first_answer(backend, entry, plan, opts, arrived, keep_alive)

    def final(stats: Stats, text: str = "", calls: list[dict] | None = None) -> dict:
        message: dict = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = ollama_tool_calls(calls)
        body = {"model": name, "created_at": now_rfc3339(), "message": message,
                "done_reason": stats.done_reason, "done": True}
        body.update(_timings(stats, arrived, waited))
        return body

    def piece(text: str) -> dict:
        return {"model": name, "created_at": now_rfc3339(), "message": {"role": "assistant", "content": text}, "done": False}

    if lazy is not None:
        # The text streams as it comes; a call, once opened, is held and sent whole in one chunk.
        def ending(stats: Stats) -> bytes:
            head = piece(lazy.held())
            if lazy.calls:
                head["message"]["tool_calls"] = ollama_tool_calls(lazy.calls)
            chunk = dumps(head) + b"\n" if lazy.calls or lazy.held() else b""
            return chunk + dumps(final(stats)) + b"\n"

        return await stream_out(request, lazy, NDJSON, piece=lambda text: dumps(piece(text)) + b"\n", final=ending,
                                error=lambda message: dumps({"error": message}) + b"\n")
    if not answer.needs_text:
        parsed = answer.parsed
        text = parsed.content if parsed.calls else answer.raw
        if not stream:
            return json_response(final(answer.stats, text, parsed.calls))
        # Streamed as Ollama streams calls: one chunk with the calls (and any text before them), then the end.
        response = web.StreamResponse(headers={"Content-Type": NDJSON})
        await response.prepare(request)
        head = piece(text)
        if parsed.calls:
            head["message"]["tool_calls"] = ollama_tool_calls(parsed.calls)
        end = final(answer.stats)
        await response.write(dumps(head) + b"\n" + dumps(end) + b"\n")
        await response.write_eof()
        return response
    gen, _ = await backend.generate(entry, plan.text_options(opts), arrived, keep_alive, prompt=plan.text_prompt(),
                                    kind="chat")
    return await _reply(request, gen, stream, lambda stats, text="": final(add_stats(answer.stats, stats), text), piece)
