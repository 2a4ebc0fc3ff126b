"""A fake OpenAI-compatible server the traffic tests control: delays, errors, broken streams, hangs.

Each request takes the next behaviour from `plan` (cycled in arrival order) or from a callable.
Behaviour keys (all optional): status (200), ttft (s before the first token), token_delay (s between
tokens), tokens (4), usage (True: a usage chunk when asked with stream_options), truncate_after
(close the connection after that many content chunks), hang (never answer), reset (close without
answering), bad_json (a 200 that is not a chat completion), stream_error (an error event after the
first token), content (the answer's text instead of "tok " per token; streamed in 4-character pieces),
tool_calls (a list of (name, arguments text): the answer's calls, finish_reason tool_calls; streamed as
OpenAI does, the name first, then the arguments in two pieces).
POST /v1/embeddings answers one 8-number vector per input (behaviour keys status, hang, bad_json, short: one
vector too few); `embeddings` keeps the bodies it received.

Runs in a thread (`with FakeOpenAI(...) as fake:`) or as a process for benchmarks:
`python -m tests.support.fakes.traffic [--port 0]` (from the checkout) prints `PORT <n>` once it listens.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable

from aiohttp import web

from tests.support import serverthread

KEY = "sk-fake-test-key"
# Shutdown gives the handlers half a second: a hung request is released (before_stop), not waited for.
RUNNER_OPTIONS = {"handle_signals": False, "shutdown_timeout": 0.5}
MODEL = "fake-model"


def _chunk(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _delta(i: int, content: str | None, finish: str | None = None) -> bytes:
    return _chunk({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                   "choices": [{"index": 0, "delta": {"content": content} if content else {},
                                "finish_reason": finish}]})


class FakeOpenAI:
    """The fake; `requests` keeps (headers, body) of every chat completion it received."""

    def __init__(self, plan: list[dict] | Callable[[int, dict], dict] | None = None,
                 models: list[str] | None = None, key: str | None = KEY) -> None:
        self.plan = plan or [{}]
        self.models = [MODEL] if models is None else models
        self.key = key
        self.requests: list[tuple[dict, dict]] = []
        self.embeddings: list[dict] = []
        self.port = 0
        self._count = 0
        self._server: serverthread.ServerThread | None = None
        # Set when the fake shuts down: what hangs on purpose ends then (bound to the loop that first waits).
        self._release = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embed)
        return app

    def _auth(self, request: web.Request) -> web.Response | None:
        # LiteLLM 1.108.7's answers: no key 500, a wrong key 400 "No connected db".
        if self.key is None:
            return None
        got = request.headers.get("Authorization", "")
        if not got:
            return web.json_response({"error": {"message": "Internal Server Error"}}, status=500)
        if got != f"Bearer {self.key}":
            return web.json_response({"error": {"message": "No connected db."}}, status=400)
        return None

    async def _models(self, request: web.Request) -> web.Response:
        refused = self._auth(request)
        if refused is not None:
            return refused
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})

    def _behaviour(self, body: dict) -> dict:
        n = self._count
        self._count += 1
        if callable(self.plan):
            return self.plan(n, body)
        return self.plan[n % len(self.plan)]

    async def _embed(self, request: web.Request) -> web.Response:
        refused = self._auth(request)
        if refused is not None:
            return refused
        body = await request.json()
        self.embeddings.append(body)
        b = self._behaviour(body)
        if b.get("hang"):
            await self._release.wait()
            return web.Response(status=503)
        status = b.get("status", 200)
        if status != 200:
            return web.json_response({"error": {"message": f"fake {status}", "code": status}}, status=status)
        if b.get("bad_json"):
            return web.Response(text="<html>not json</html>", content_type="application/json")
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        n = len(inputs) - 1 if b.get("short") else len(inputs)
        return web.json_response({
            "object": "list", "model": body.get("model", MODEL),
            "data": [{"object": "embedding", "index": i, "embedding": [0.125] * 8} for i in range(n)],
            "usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)}})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        refused = self._auth(request)
        if refused is not None:
            return refused
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        b = self._behaviour(body)
        if b.get("reset"):
            request.transport.close()
            return web.Response()
        if b.get("hang"):
            await self._release.wait()  # until the fake shuts down; the client gives up long before
            return web.Response(status=503)
        status = b.get("status", 200)
        if status != 200:
            return web.json_response({"error": {"message": f"fake {status}", "code": status}}, status=status)
        if b.get("tool_calls") is not None:
            return self._tool_calls(body, b["tool_calls"])
        content = b.get("content")
        pieces = [content[i:i + 4] for i in range(0, len(content), 4)] if content else None
        tokens = len(pieces) if pieces else b.get("tokens", 4)
        ttft, gap = b.get("ttft", 0.0), b.get("token_delay", 0.0)
        piece = (lambda i: pieces[i]) if pieces else (lambda i: "tok ")
        if not body.get("stream"):
            if ttft or gap:
                await asyncio.sleep(ttft + gap * max(tokens - 1, 0))
            if b.get("bad_json"):
                return web.Response(text="<html>not json</html>", content_type="application/json")
            return web.json_response({
                "id": "chatcmpl-fake", "object": "chat.completion", "model": MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content or "tok " * tokens},
                             "finish_reason": "length"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": tokens, "total_tokens": 7 + tokens}})
        usage = b.get("usage", True) and (body.get("stream_options") or {}).get("include_usage")
        tail = _delta(tokens, None, "length")
        if usage:
            tail += _chunk({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": MODEL, "choices": [],
                            "usage": {"prompt_tokens": 7, "completion_tokens": tokens, "total_tokens": 7 + tokens}})
        tail += b"data: [DONE]\n\n"
        plain = not (ttft or gap or b.get("truncate_after") is not None or b.get("stream_error")
                     or b.get("bad_json"))
        if plain:  # zero latency: the whole stream in one write, as cheap as the fake can be
            payload = b"".join(_delta(i, piece(i)) for i in range(tokens)) + tail
            return web.Response(body=payload, content_type="text/event-stream")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        if ttft:
            await asyncio.sleep(ttft)
        for i in range(tokens):
            if i == b.get("truncate_after"):
                request.transport.close()  # mid-stream: no terminating chunk, no [DONE]
                return resp
            if b.get("bad_json") and i == 1:
                await resp.write(b"data: {not json\n\n")
            await resp.write(_delta(i, piece(i)))
            if b.get("stream_error"):
                await resp.write(_chunk({"error": {"message": "fake backend died", "code": 500}}))
                await resp.write_eof()
                return resp
            if gap and i < tokens - 1:
                await asyncio.sleep(gap)
        await resp.write(tail)
        await resp.write_eof()
        return resp

    @staticmethod
    def _tool_calls(body: dict, calls: list[tuple[str, str]]) -> web.Response:
        usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
        full = [{"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
                for i, (n, a) in enumerate(calls)]
        if not body.get("stream"):
            return web.json_response({"id": "chatcmpl-fake", "object": "chat.completion", "model": MODEL, "usage": usage,
                                      "choices": [{"index": 0, "finish_reason": "tool_calls",
                                                   "message": {"role": "assistant", "content": None, "tool_calls": full}}]})

        def delta(part: dict, finish: str | None = None) -> bytes:
            return _chunk({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": MODEL,
                           "choices": [{"index": 0, "delta": part, "finish_reason": finish}]})

        out = b""
        for i, (name, arguments) in enumerate(calls):
            half = len(arguments) // 2
            out += delta({"role": "assistant", "tool_calls": [
                {"index": i, "id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": ""}}]})
            for piece in (arguments[:half], arguments[half:]):
                out += delta({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        out += delta({}, "tool_calls")
        if (body.get("stream_options") or {}).get("include_usage"):
            out += _chunk({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": MODEL, "choices": [],
                           "usage": usage})
        return web.Response(body=out + b"data: [DONE]\n\n", content_type="text/event-stream")

    def __enter__(self) -> FakeOpenAI:
        self._release = asyncio.Event()  # a fresh one per run: the last run's is set, and bound to its loop
        self._server = serverthread.ServerThread(self.app(), name="fake-openai", before_stop=self._release_all,
                                                 **RUNNER_OPTIONS).start()
        self.port = self._server.port
        return self

    async def _release_all(self) -> None:
        self._release.set()

    def __exit__(self, *exc) -> None:
        self._server.stop()


def _serve_forever(port: int, tokens: int) -> None:
    """Process mode: zero-latency answers until killed."""
    fake = FakeOpenAI(plan=[{"tokens": tokens}])

    async def main() -> None:
        _, fake.port = await serverthread.serve(fake.app(), port, **RUNNER_OPTIONS)
        print(f"PORT {fake.port}", flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=4)
    args = parser.parse_args()
    sys.exit(_serve_forever(args.port, args.tokens))


class FakeTokenizePost:
    """A stand-in for requests.post to a backend's /api/tokenize (tokencount.ModelTokenizer's `post`): each call takes
    the next step of `plan` (the last one repeats): "ok" (one token per word), "ok+1" (a token too many per text),
    ("status", CODE, BODY) where BODY is a dict (sent as JSON) or text, "short" (one token list too few),
    "strings" (token lists of strings), "not json", or an exception instance to raise. `calls` keeps each body."""

    def __init__(self, *plan):
        self.plan = list(plan) or ["ok"]
        self.calls: list[dict] = []

    def __call__(self, url: str, json: dict, timeout: float):
        import json as json_module

        import requests

        step = self.plan[min(len(self.calls), len(self.plan) - 1)]
        self.calls.append({"url": url, **json})
        if isinstance(step, BaseException):
            raise step
        texts = json["content"]
        status, body = 200, None
        if step in ("ok", "ok+1"):
            extra = [0] if step == "ok+1" else []
            body = {"model": json["model"], "tokens": [[len(w) for w in t.split()] + extra for t in texts]}
        elif step == "short":
            body = {"model": json["model"], "tokens": [[1] for _ in texts[1:]]}
        elif step == "strings":
            body = {"model": json["model"], "tokens": [["a"] for _ in texts]}
        elif step == "not json":
            body = "<html>oops</html>"
        else:
            _, status, body = step
        answer = requests.Response()
        answer.status_code = status
        answer._content = (json_module.dumps(body) if isinstance(body, dict) else str(body)).encode()
        return answer
