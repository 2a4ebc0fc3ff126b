"""Ollama's native API: /api/version, tags, ps, show, generate and chat, field by field."""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiohttp import web

from .engine import Stats
from .handling import backend_of, collect, stream_out
from .model import now_rfc3339, rfc3339
from .options import BadRequest, GenOptions, parse_options
from .protocol import (
    OLLAMA_VERSION,
    dumps,
    get_bool,
    get_str,
    json_response,
    parse_messages,
    read_json,
    require_model,
)

NDJSON = "application/x-ndjson"
# Ollama shows a model kept loaded forever as expiring after the longest Go duration (~292 years).
FOREVER = timedelta(microseconds=(2**63 - 1) // 1000)


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
    return json_response({"models": [backend_of(request).engine.info.tag_entry()]})


async def ps(request: web.Request) -> web.Response:
    backend = backend_of(request)
    expires = rfc3339(datetime.fromtimestamp(backend.started_at, UTC) + FOREVER)
    return json_response({"models": [backend.engine.info.ps_entry(expires)]})


async def show(request: web.Request) -> web.Response:
    backend = backend_of(request)
    data = await read_json(request)
    name = data.get("model") or data.get("name")
    if not name:
        raise BadRequest("model is required")
    try:
        require_model(data, backend.tag)
    except LookupError:
        return json_response({"error": f"model '{name}' not found"}, 404)
    defaults = GenOptions()
    params = {
        "num_ctx": backend.engine.n_ctx,
        "temperature": defaults.temperature,
        "top_k": defaults.top_k,
        "top_p": defaults.top_p,
        "repeat_penalty": defaults.repeat_penalty,
    }
    text = "\n".join(f"{key:<30} {value}" for key, value in params.items())
    return json_response(backend.engine.info.show(text))


def _timings(stats: Stats, arrived: float, waited: float) -> dict:
    """The final object's counts and nanosecond durations, as Ollama names them."""
    return {
        "total_duration": int((time.perf_counter() - arrived) * 1e9),
        "load_duration": int(waited * 1e9),
        "prompt_eval_count": stats.prompt_eval_count,
        "prompt_eval_duration": stats.prompt_eval_ns,
        "eval_count": stats.eval_count,
        "eval_duration": stats.eval_ns,
    }


def _reject_unsupported(data: dict, tag: str) -> None:
    if data.get("tools"):
        raise BadRequest(f"{tag} does not support tools")
    if data.get("think") is True:
        raise BadRequest(f'"{tag}" does not support thinking')
    if data.get("suffix"):
        raise BadRequest(f"{tag} does not support insert")
    if data.get("images"):
        raise BadRequest(f"{tag} does not support images")


async def _reply(request: web.Request, gen, stream: bool, final: Callable[..., dict],
                 piece: Callable[[str], dict]) -> web.StreamResponse:
    """Ollama's two answer shapes: one JSON body, or NDJSON pieces and then the final line."""
    if not stream:
        text, stats = await collect(gen)
        return json_response(final(stats, text))
    return await stream_out(
        request, gen, NDJSON,
        piece=lambda text: dumps(piece(text)) + b"\n",
        final=lambda stats: dumps(final(stats)) + b"\n",
        error=lambda message: dumps({"error": message}) + b"\n",
    )


async def _accept(request: web.Request):
    """What each generation route reads first: the arrival time, the backend, the JSON body, the model name."""
    arrived = time.perf_counter()
    backend = backend_of(request)
    data = await read_json(request)
    name = require_model(data, backend.tag)
    _reject_unsupported(data, backend.tag)
    return arrived, backend, data, name


async def generate(request: web.Request) -> web.StreamResponse:
    arrived, backend, data, name = await _accept(request)
    prompt = get_str(data, "prompt")
    system = get_str(data, "system")
    raw = get_bool(data, "raw", False)
    stream = get_bool(data, "stream", True)
    opts = parse_options(data.get("options"))
    context = data.get("context") or []
    if not isinstance(context, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in context):
        raise BadRequest("context must be a list of integers")
    if not prompt and not context:
        # Ollama answers an empty prompt by loading the model; ours is always loaded.
        return json_response({"model": name, "created_at": now_rfc3339(), "response": "", "done": True, "done_reason": "load"})
    if not raw:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        prompt = backend.render_chat(messages)
    gen, waited = await backend.generate(prompt, opts, arrived, prefix=context)

    def final(stats: Stats, text: str = "") -> dict:
        body = {"model": name, "created_at": now_rfc3339(), "response": text, "done": True, "done_reason": stats.done_reason}
        if not raw:
            body["context"] = stats.input_tokens + stats.output_tokens
        body.update(_timings(stats, arrived, waited))
        return body

    return await _reply(request, gen, stream, final,
                        lambda text: {"model": name, "created_at": now_rfc3339(), "response": text, "done": False})


async def chat(request: web.Request) -> web.StreamResponse:
    arrived, backend, data, name = await _accept(request)
    messages = parse_messages(data.get("messages"))
    stream = get_bool(data, "stream", True)
    opts = parse_options(data.get("options"))
    if not messages:
        return json_response({
            "model": name, "created_at": now_rfc3339(), "message": {"role": "assistant", "content": ""},
            "done_reason": "load", "done": True,
        })
    gen, waited = await backend.generate(backend.render_chat(messages), opts, arrived)

    def final(stats: Stats, text: str = "") -> dict:
        body = {
            "model": name, "created_at": now_rfc3339(), "message": {"role": "assistant", "content": text},
            "done_reason": stats.done_reason, "done": True,
        }
        body.update(_timings(stats, arrived, waited))
        return body

    return await _reply(request, gen, stream, final, lambda text: {
        "model": name, "created_at": now_rfc3339(), "message": {"role": "assistant", "content": text}, "done": False,
    })
