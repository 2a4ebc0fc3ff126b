"""One chat completion or embeddings request over HTTP, timed and classified; it never raises except on cancellation."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from .. import outcomes

dumps, loads = orjson.dumps, orjson.loads  # orjson (a dependency) halves the client's JSON cost against json

# A request's detail: its finer status, kept beside its class (llmops/outcomes.py: classify_request). A non-200
# answer's detail is http_<status>; a request the run cancelled (Ctrl-C) has no class and is not counted.
OK = outcomes.OK
TIMEOUT = "timeout"  # no complete answer within --timeout
CONNECTION_ERROR = "connection_error"
TRUNCATED = "truncated_stream"  # the SSE stream ended or broke before `data: [DONE]`
STREAM_ERROR = "stream_error"  # an error event inside a 200 stream
BAD_RESPONSE = "bad_response"  # 200 whose body is not a chat completion
GENERATOR_ERROR = "generator_error"  # a fault in this generator; should never happen
INVALID_OUTPUT = outcomes.INVALID_OUTPUT  # a 200 whose content does not parse or validate (--response-format)
CANCELLED = "cancelled"  # in flight when the run was interrupted: not counted
CHAT, EMBEDDINGS = "chat", "embeddings"  # the request kinds

_ERROR_CHARS = 300  # how much of an error body to keep


@dataclass(slots=True)
class RequestResult:
    """What happened to one request; times are seconds, `start_s` from the run's start."""

    id: int
    phase: str = "measure"
    prompt_id: str = ""
    category: str = ""
    detail: str = GENERATOR_ERROR
    http_status: int | None = None
    error: str | None = None
    scheduled_s: float | None = None
    start_s: float = 0.0
    latency_s: float | None = None
    ttft_s: float | None = None
    tpot_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_source: str | None = None
    finish_reason: str | None = None
    concurrency: int | None = None
    slo_ok: bool | None = None
    call_id: str | None = None  # LiteLLM's x-litellm-call-id: the request's row in the proxy's request log
    model: str = ""
    kind: str = CHAT
    priority: int | None = None  # the priority sent to the proxy's queue (None: none sent)
    inputs: int | None = None  # embeddings: texts sent in the request
    text_parts: list[str] | None = None  # the answer's content, kept only when it is to be checked
    calls: list[dict] | None = None  # the answer's tool calls ({"name", "arguments" text}), kept with --tools

    def record(self) -> dict:
        """The JSON-ready line written to --output (ITL summarised, not listed)."""
        r = lambda v: None if v is None else round(v, 6)  # noqa: E731 - microseconds are plenty
        itl = self.itl_s
        return {
            "id": self.id, "phase": self.phase, "status": self.outcome or CANCELLED, "detail": self.detail,
            "http_status": self.http_status,
            "error": self.error, "prompt_id": self.prompt_id, "category": self.category,
            "scheduled_s": r(self.scheduled_s), "start_s": r(self.start_s), "latency_s": r(self.latency_s),
            "ttft_s": r(self.ttft_s), "tpot_s": r(self.tpot_s),
            "itl_mean_s": r(sum(itl) / len(itl)) if itl else None, "itl_max_s": r(max(itl)) if itl else None,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "tokens_source": self.tokens_source, "finish_reason": self.finish_reason,
            "concurrency": self.concurrency, "slo_ok": self.slo_ok, "call_id": self.call_id,
            **self._model_fields(), **({"tool_calls": len(self.calls)} if self.calls is not None else {}),
        }

    def _model_fields(self) -> dict:
        return {"model": self.model, "kind": self.kind, "inputs": self.inputs, "priority": self.priority}

    @property
    def outcome(self) -> str | None:
        """The request's class (outcomes.GENERATOR_CLASSES), or None when the run cancelled it."""
        return None if self.detail == CANCELLED else outcomes.classify_request(self.detail, self.http_status)

    @property
    def text(self) -> str:
        return "".join(self.text_parts or ())


async def execute(session: aiohttp.ClientSession, endpoint: str, body: bytes, stream: bool,
                  timeout: float, result: RequestResult, t0: float, clock=time.perf_counter) -> RequestResult:
    """Send one request, fill `result` in and return it; `t0` is the run's origin on `clock` (perf_counter)."""
    start = clock()
    result.start_s = start - t0
    try:
        async with asyncio.timeout(timeout):
            async with session.post(endpoint, data=body) as resp:
                result.call_id = resp.headers.get("x-litellm-call-id")
                if resp.status != 200:
                    text = await resp.text(errors="replace")
                    result.http_status = resp.status
                    result.detail = outcomes.http_detail(resp.status)
                    result.error = f"HTTP {resp.status}: {_snippet(text)}"
                    result.latency_s = clock() - start
                    return result
                result.http_status = 200
                if stream and resp.content_type == "text/event-stream":
                    await _read_stream(resp, start, result, clock)
                else:
                    _read_json(await resp.read(), result)
                    result.latency_s = clock() - start
    except TimeoutError:
        result.detail, result.error = TIMEOUT, f"no complete answer within {timeout:g} s"
        result.latency_s = None
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        # Broken after a 200 stream had begun: truncated; before any answer: a connection error.
        result.detail = TRUNCATED if result.http_status == 200 else CONNECTION_ERROR
        result.error = f"{type(exc).__name__}: {_snippet(str(exc))}"
        result.latency_s = None
    except aiohttp.ClientError as exc:
        result.detail, result.error = CONNECTION_ERROR, f"{type(exc).__name__}: {_snippet(str(exc))}"
        result.latency_s = None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        result.detail, result.error = BAD_RESPONSE, f"{type(exc).__name__}: {_snippet(str(exc))}"
        result.latency_s = None
    return result


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS] + "..."


def _read_json(raw: bytes, result: RequestResult) -> None:
    """A non-streamed chat completion, or an embeddings answer."""
    doc = loads(raw)
    if result.kind == EMBEDDINGS:
        _read_embeddings(doc, raw, result)
        return
    if not isinstance(doc, dict) or "choices" not in doc:
        raise ValueError(f"not a chat completion: {raw[:120]!r}")
    choice = doc["choices"][0] if doc["choices"] else {}
    result.finish_reason = choice.get("finish_reason")
    if result.text_parts is not None:
        result.text_parts.append((choice.get("message") or {}).get("content") or "")
    if result.calls is not None:
        for call in (choice.get("message") or {}).get("tool_calls") or ():
            fn = call.get("function") or {}
            result.calls.append({"name": fn.get("name"), "arguments": fn.get("arguments") or ""})
    _take_usage(doc.get("usage"), result)
    result.detail = OK


def _read_embeddings(doc: object, raw: bytes, result: RequestResult) -> None:
    """An OpenAI embeddings list: one non-empty vector per input sent."""
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise ValueError(f"not an embeddings list: {raw[:120]!r}")
    if result.inputs is not None and len(data) != result.inputs:
        raise ValueError(f"{len(data)} embeddings for {result.inputs} inputs")
    if not all(isinstance(d, dict) and isinstance(d.get("embedding"), list | str) and d["embedding"] for d in data):
        raise ValueError("an embedding is missing or empty")
    usage = doc.get("usage")
    if isinstance(usage, dict):
        result.prompt_tokens = usage.get("prompt_tokens")
        result.completion_tokens = 0
        result.tokens_source = "usage"
    result.detail = OK


def _add_call_deltas(calls: list[dict], deltas: list) -> None:
    """OpenAI's streamed tool calls: a delta opens call `index` (with its name) or adds to its arguments."""
    for delta in deltas:
        index = delta.get("index", len(calls))
        while len(calls) <= index:
            calls.append({"name": None, "arguments": ""})
        fn = delta.get("function") or {}
        if fn.get("name"):
            calls[index]["name"] = fn["name"]
        calls[index]["arguments"] += fn.get("arguments") or ""


def _take_usage(usage: object, result: RequestResult) -> None:
    if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
        result.prompt_tokens = usage.get("prompt_tokens")
        result.completion_tokens = usage.get("completion_tokens")
        result.tokens_source = "usage"


async def _read_stream(resp: aiohttp.ClientResponse, start: float, result: RequestResult,
                       clock=time.perf_counter) -> None:
    """Read SSE events as they arrive; each event is stamped with the arrival of its bytes (read on `clock`).

    TTFT is the first content chunk's arrival less `start`, each inter-token gap the time between two content
    chunks' arrivals, TPOT (latency - TTFT) / (tokens - 1) with the usage chunk's token count.
    """
    buffer = b""
    last = None
    chunks = 0
    done = False
    itl = result.itl_s
    async for data in resp.content.iter_any():
        now = clock()
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        buffer += data
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue  # comments, event names, ids, retry hints
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    done = True
                    continue
                obj = loads(payload)
                if "error" in obj:
                    result.detail = STREAM_ERROR
                    result.error = f"error event: {_snippet(str(obj['error']))}"
                    result.latency_s = now - start
                    return
                choices = obj.get("choices")
                if choices:
                    choice = choices[0]
                    delta = choice.get("delta") or {}
                    if result.text_parts is not None and delta.get("content"):
                        result.text_parts.append(delta["content"])
                    calls = delta.get("tool_calls")
                    if calls and result.calls is not None:
                        _add_call_deltas(result.calls, calls)
                    if delta.get("content") or delta.get("reasoning_content") or calls:
                        if last is None:
                            result.ttft_s = now - start
                        else:
                            itl.append(now - last)
                        last = now
                        chunks += 1
                    if choice.get("finish_reason"):
                        result.finish_reason = choice["finish_reason"]
                if obj.get("usage"):
                    _take_usage(obj["usage"], result)
    end = clock()
    if not done:
        result.detail = TRUNCATED
        result.error = f"stream ended after {chunks} content chunks without [DONE]"
        result.latency_s = None
        return
    result.latency_s = end - start
    if result.completion_tokens is None:
        # No usage chunk: count content chunks, which is one token each on Ollama and llama.cpp.
        result.completion_tokens, result.tokens_source = chunks, "chunks"
    if result.ttft_s is not None and result.completion_tokens and result.completion_tokens > 1:
        result.tpot_s = (result.latency_s - result.ttft_s) / (result.completion_tokens - 1)
    result.detail = OK
