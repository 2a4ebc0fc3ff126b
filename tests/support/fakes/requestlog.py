"""A FAKE Ollama for the request-log tests: the fault fake, plus a slow stream (for a client that hangs up mid-stream)."""
from __future__ import annotations

import asyncio
import json

from aiohttp import web

from tests.support.fakes.ollama import FakeOllama, _chat_line, _ndjson

DRIBBLE = "DRIBBLE"  # a prompt holding this word is answered as a stream of 40 chunks, 0.1 s apart
FAIL_ONCE = "FAILONCE"  # the first request holding this word gets a 500, the next ones are answered


class DribblingOllama(FakeOllama):
    """FakeOllama whose /api/chat streams slowly, or fails once, when the prompt asks for it."""

    async def _chat(self, request: web.Request, body: bytes, mode: str) -> web.StreamResponse:
        if FAIL_ONCE.encode() in body and self.attempts(FAIL_ONCE) == 1:
            return web.json_response({"error": "fake ollama: failing this once"}, status=500)
        if DRIBBLE.encode() not in body or not json.loads(body).get("stream", True):
            return await super()._chat(request, body, mode)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for _ in range(40):
            await response.write(_ndjson([_chat_line("tok ", False)]))
            await asyncio.sleep(0.1)
        await response.write(_ndjson([_chat_line("", True)]))
        await response.write_eof()
        return response
