"""The one FAKE Ollama of the tests and benchmarks: switchable faults (slow, 500, malformed JSON, truncated
stream, 10 MB, reset), counted requests; `python -m tests.support.fakes.ollama --port N` serves a healthy one.

It serves several models (chat ones and an embedding one, /api/embed and /api/embeddings); a fault can be set
for one path, one model, or both, so a test can make one model's deployment fail while the others answer.
"""
from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from tests.support import serverthread

MODEL = "smollm2:135m"
CHAT_MODELS = (MODEL, "gemma3:270m")
EMBED_MODEL = "all-minilm:22m"
EMBED_DIMS = 384
MODELS = (*CHAT_MODELS, EMBED_MODEL)
HUGE_BYTES = 10 * 1024 * 1024
# Every fault the fake can play; "ok" answers like a healthy Ollama.
MODES = ("ok", "slow", "http500", "malformed", "truncated", "nodone", "huge", "reset")


@dataclass
class Fault:
    """What the fake does to one request: a mode and, for "slow", the seconds it waits first."""

    mode: str = "ok"
    delay: float = 0.0


@dataclass
class Seen:
    """One request the fake received (the body is kept so a test can pick out its own attempts)."""

    method: str
    path: str
    body: bytes
    at: float = field(default_factory=time.monotonic)


def _stamp() -> str:
    return "2026-01-01T00:00:00Z"


def _chat_line(content: str, done: bool, model: str = MODEL) -> dict:
    line = {"model": model, "created_at": _stamp(), "message": {"role": "assistant", "content": content}, "done": done}
    if done:
        line.update(done_reason="stop", total_duration=1000, prompt_eval_count=3, eval_count=2)
    return line


def _model_of(body: bytes) -> str | None:
    """The "model" field of a JSON request body, or None."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return None
    return data.get("model") if isinstance(data, dict) else None


def _format_of(body: bytes) -> object:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return None
    return data.get("format") if isinstance(data, dict) else None


def _ndjson(objs: list[dict]) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


class FakeOllama:
    """aiohttp server on 127.0.0.1 (an ephemeral port unless told one) in its own thread; set faults per path while it runs."""

    def __init__(self, port: int = 0):
        self._lock = threading.Lock()
        self._faults: dict[tuple[str | None, str | None], Fault] = {}
        self.models = list(MODELS)
        self.default = Fault()
        self.seen: list[Seen] = []
        self._server: serverthread.ServerThread | None = None
        self.port = port

    # -- control ---------------------------------------------------------------
    def set_fault(self, mode: str, delay: float = 0.0, path: str | None = None, model: str | None = None) -> None:
        """Play `mode` on `path` (e.g. "/api/chat") and/or for `model`; on everything when both are None."""
        if mode not in MODES:
            raise ValueError(f"unknown fault {mode!r} (expected one of {', '.join(MODES)})")
        with self._lock:
            if path is None and model is None:
                self.default, self._faults = Fault(mode, delay), {}
            else:
                self._faults[(path, model)] = Fault(mode, delay)

    def reset(self) -> None:
        """Back to healthy answers everywhere and forget what was seen."""
        with self._lock:
            self.default, self._faults = Fault(), {}
            self.seen.clear()

    def counts(self) -> Counter:
        """Requests received per path, e.g. {"/api/chat": 2}."""
        with self._lock:
            return Counter(s.path for s in self.seen)

    def model_counts(self, path: str | None = None, marker: str | None = None) -> Counter:
        """Requests received per model named in the body (on `path` only, and holding `marker`, when given)."""
        needle = marker.encode() if marker else b""
        with self._lock:
            seen = [s for s in self.seen if (path is None or s.path == path) and needle in s.body]
        return Counter(_model_of(s.body) for s in seen)

    def attempts(self, marker: str, path: str = "/api/chat") -> int:
        """Requests to `path` whose body holds `marker` (a nonce the test put in its prompt)."""
        needle = marker.encode()
        with self._lock:
            return sum(1 for s in self.seen if s.path == path and needle in s.body)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> FakeOllama:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = serverthread.ServerThread(app, self.port, name="fake-ollama").start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------
    def _fault_for(self, path: str, model: str | None) -> Fault:
        with self._lock:
            for key in ((path, model), (None, model), (path, None)):
                if key in self._faults:
                    return self._faults[key]
            return self.default

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        transport = request.transport
        if transport is not None and (sock := transport.get_extra_info("socket")) is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self.seen.append(Seen(request.method, request.path, body))
        model = _model_of(body)
        fault = self._fault_for(request.path, model)
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay)
            if request.transport is None or request.transport.is_closing():
                raise asyncio.CancelledError()  # the client gave up (its timeout): nobody to answer
        if fault.mode == "reset":
            return self._reset(request)
        if fault.mode == "http500":
            return web.json_response({"error": "fake ollama: injected internal server error"}, status=500)
        if fault.mode == "malformed":
            return web.Response(body=b'{"model": "smollm2:135m", "message": {"role": "assist', status=200,
                                content_type="application/json")
        if request.path in ("/api/chat", "/api/generate") and model is not None and model not in self.models:
            return web.json_response({"error": f"model \"{model}\" not found, try pulling it first"}, status=404)
        if request.path == "/api/chat":
            try:
                return await self._chat(request, body, fault.mode)
            except ConnectionResetError:
                raise asyncio.CancelledError() from None  # the client hung up mid-stream
        if request.path == "/api/generate":
            return web.json_response({"model": model or MODEL, "created_at": _stamp(), "response": "ok", "done": True})
        if request.path in ("/api/embed", "/api/embeddings"):
            return self._embed(request.path, body)
        return self._info(request.path)

    def _embed(self, path: str, body: bytes) -> web.Response:
        """Ollama's /api/embed (input: a string or a list) and legacy /api/embeddings (prompt): 384 zeros-and-one."""
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return web.json_response({"error": "fake ollama: request body is not JSON"}, status=400)
        model = data.get("model")
        if model not in self.models:
            return web.json_response({"error": f"model \"{model}\" not found, try pulling it first"}, status=404)
        vector = [1.0] + [0.0] * (EMBED_DIMS - 1)
        if path == "/api/embeddings":
            return web.json_response({"embedding": vector})
        inputs = data.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            return web.json_response({"error": "invalid input type"}, status=400)
        return web.json_response({"model": model, "embeddings": [vector for _ in inputs],
                                  "total_duration": 1000, "load_duration": 0,
                                  "prompt_eval_count": sum(len(i.split()) for i in inputs)})

    def _reset(self, request: web.Request) -> web.StreamResponse:
        """Close the socket with SO_LINGER 0: the peer gets an RST and no response at all."""
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if transport is not None:
            transport.abort()
        # aiohttp must not write anything after the abort; raising ends the handler quietly.
        raise asyncio.CancelledError()

    def _info(self, path: str) -> web.Response:
        if path == "/api/version":
            return web.json_response({"version": "0.0.0-fake-faults"})
        if path == "/api/tags":
            return web.json_response({"models": [{"name": m, "model": m, "size": 1000, "modified_at": _stamp()}
                                                 for m in self.models]})
        if path == "/api/ps":
            return web.json_response({"models": []})
        if path == "/api/show":
            return web.json_response({"modelfile": "", "parameters": "", "template": "{{ .Prompt }}",
                                      "details": {"family": "llama"}, "model_info": {}})
        return web.json_response({"error": f"fake ollama: no route {path}"}, status=404)

    async def _chat(self, request: web.Request, body: bytes, mode: str) -> web.StreamResponse:
        try:
            stream = json.loads(body or b"{}").get("stream", True)
        except ValueError:
            return web.json_response({"error": "fake ollama: request body is not JSON"}, status=400)
        model = _model_of(body) or MODEL
        # JSON mode (format "json" or a schema): a JSON object, as Ollama's grammar-constrained decoding gives.
        content = "x" * HUGE_BYTES if mode == "huge" else ('{"answer": "ok"}' if _format_of(body) else "ok")
        if not stream:
            if mode in ("truncated", "nodone"):
                # A non-streamed answer cut mid-object: the same bytes a dropped stream leaves.
                text = json.dumps(_chat_line(content, True, model))
                return web.Response(body=text[: len(text) // 2].encode(), content_type="application/json")
            return web.json_response(_chat_line(content, True, model))
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        if mode == "huge":
            piece = 256 * 1024
            for start in range(0, HUGE_BYTES, piece):
                await response.write(_ndjson([_chat_line(content[start:start + piece], False, model)]))
            await response.write(_ndjson([_chat_line("", True, model)]))
        elif mode == "truncated":
            # Two good lines, then half an object, then a clean end of the chunked body.
            await response.write(_ndjson([_chat_line("Hel", False, model), _chat_line("lo", False, model)]))
            await response.write(json.dumps(_chat_line(" world", False, model)).encode()[:20])
        elif mode == "nodone":
            # Well-formed lines that never say done:true (a backend that stopped early).
            await response.write(_ndjson([_chat_line("Hel", False, model), _chat_line("lo", False, model)]))
        else:
            await response.write(_ndjson([_chat_line("o", False, model), _chat_line("k", False, model), _chat_line("", True, model)]))
        await response.write_eof()
        return response


if __name__ == "__main__":
    # A healthy, zero-latency fake for the benchmarks, until it is terminated.
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    fake = FakeOllama(port=parser.parse_args().port).start()
    try:
        threading.Event().wait()
    finally:
        fake.stop()
