"""A zero-latency FAKE Ollama for benchmarks: fixed answers, TCP_NODELAY on (as Go servers do)."""
from __future__ import annotations

import argparse
import json

from aiohttp import web

CHAT = {
    "model": "smollm2:135m", "created_at": "2026-01-01T00:00:00Z",
    "message": {"role": "assistant", "content": "Hello!"}, "done": True, "done_reason": "stop",
    "total_duration": 1000, "load_duration": 0, "prompt_eval_count": 5, "prompt_eval_duration": 100,
    "eval_count": 2, "eval_duration": 100,
}
TAGS = {"models": [{"name": "smollm2:135m", "model": "smollm2:135m", "size": 1, "digest": "0" * 64,
                    "modified_at": "2026-01-01T00:00:00Z", "details": {}}]}


async def chat(request: web.Request) -> web.Response:
    body = await request.json()
    if body.get("stream", True):
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        first = dict(CHAT, done=False, message={"role": "assistant", "content": "Hello!"})
        first.pop("done_reason")
        await resp.write((json.dumps(first) + "\n").encode())
        await resp.write((json.dumps(dict(CHAT, message={"role": "assistant", "content": ""})) + "\n").encode())
        await resp.write_eof()
        return resp
    return web.json_response(CHAT)


async def embed(request: web.Request) -> web.Response:
    """Ollama's /api/embed: one fixed 384-number vector (all-minilm's size) per input."""
    body = await request.json()
    inputs = body["input"] if isinstance(body.get("input"), list) else [body.get("input")]
    return web.json_response({"model": body.get("model"), "embeddings": [VECTOR] * len(inputs),
                              "total_duration": 1000, "load_duration": 0, "prompt_eval_count": 3 * len(inputs)})


VECTOR = [0.05] * 384


def app() -> web.Application:
    application = web.Application()
    application.router.add_post("/api/chat", chat)
    application.router.add_post("/api/embed", embed)
    application.router.add_get("/api/version", lambda r: web.json_response({"version": "0.0.0-fake"}))
    application.router.add_get("/api/tags", lambda r: web.json_response(TAGS))
    return application


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # aiohttp sets TCP_NODELAY on every accepted connection.
    web.run_app(app(), host="127.0.0.1", port=args.port, access_log=None, print=None)
