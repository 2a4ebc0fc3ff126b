"""The LiteLLM callback: one row per request through the proxy, handed to the worker's writer thread.

Loaded by the proxy from `litellm_settings.callbacks: ["llmops.proxy.plugins.requestlog.request_log"]`
(LiteLLM imports the module; the start script puts the project on PYTHONPATH). Events it hears:
- a deployment call succeeded or failed (`async_log_success_event` / `async_log_failure_event`,
  once per attempt, so retries show as attempts);
- the proxy answered an error (`async_post_call_failure_hook`), also for requests rejected before a
  deployment is called (an unknown model: 400; all max_parallel slots in use: 429).
All events of one request carry its LiteLLM call id (the `x-litellm-call-id` header); the store
upserts on it, so a failure seen by both an event and the hook is one row, the hook's status winning.
"""
from __future__ import annotations

import atexit
import os
import threading
import time
import uuid
from pathlib import Path

from litellm.integrations.custom_logger import CustomLogger

from ...requestlog.outcomes import classify
from ...requestlog.writer import Writer
from ..queue import PRIORITY_META, WAIT_META

CONTENT_CHARS = 2000  # REQUEST_LOG_CONTENT=1 keeps at most this many characters of prompt and of answer
ERROR_CHARS = 2000
RANK_ATTEMPT_FAILED, RANK_PROXY_ERROR, RANK_SUCCESS = 1, 2, 3
# The proxy's own background health checks are calls, not requests through the proxy: not logged.
HEALTH_CHECK_ALIAS = "litellm-internal-health-check"
KINDS = {"completion": "chat", "acompletion": "chat", "text_completion": "completion",
         "atext_completion": "completion", "embedding": "embeddings", "aembedding": "embeddings"}


def _clip(value: object, limit: int) -> str | None:
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


def _kind(call_type: str | None) -> str | None:
    if not call_type:
        return None
    return KINDS.get(call_type, call_type[1:] if call_type.startswith("a") else call_type)


def _status_of(exc: BaseException | None) -> int | None:
    for attr in ("status_code", "code"):
        value = getattr(exc, attr, None)
        try:
            if value is not None:
                return int(value)
        except (TypeError, ValueError):
            continue
    return None


def _error_type(exc: BaseException | None) -> str | None:
    return type(exc).__name__ if exc is not None else None


def _text_of_messages(messages: object) -> str | None:
    if isinstance(messages, list):
        parts = []
        for message in messages:
            if isinstance(message, dict):
                parts.append(f"{message.get('role', '?')}: {message.get('content')}")
        return "\n".join(parts)
    return messages if isinstance(messages, str) else None


class RequestLog(CustomLogger):
    """Turns LiteLLM's events into rows; the writer thread starts on the first event in each process."""

    def __init__(self, environ: dict[str, str] | None = None):
        super().__init__()
        self.environ = os.environ if environ is None else environ
        self._writer: Writer | None = None
        self._pid = 0
        self._lock = threading.Lock()

    # -- settings, read from the proxy's environment (llmops.proxy.launch sets them) ------------------------
    @property
    def content(self) -> bool:
        return self.environ.get("REQUEST_LOG_CONTENT", "").strip().lower() in ("1", "true", "yes", "on")

    def writer(self) -> Writer:
        """This process's writer (a forked or spawned worker gets its own)."""
        if self._writer is None or self._pid != os.getpid():
            with self._lock:
                if self._writer is None or self._pid != os.getpid():
                    env = self.environ
                    status_dir = env.get("REQUEST_LOG_STATUS_DIR")
                    self._writer = Writer(Path(env.get("REQUEST_LOG_PATH", "data/requests.db")),
                                          days=float(env.get("REQUEST_LOG_DAYS") or 7),
                                          max_rows=int(env.get("REQUEST_LOG_MAX_ROWS") or 200_000),
                                          status_dir=Path(status_dir) if status_dir else None)
                    self._writer.on_drop = _count_dropped
                    self._writer.start()
                    atexit.register(self._writer.close, 2.0)  # a clean stop writes the queue out
                    self._pid = os.getpid()
        return self._writer

    def record(self, row: dict) -> None:
        """Queue a row; never raises into the request."""
        try:
            # A row without an id would fail its whole batch (call_id is NOT NULL): give it one of its own.
            row["call_id"] = str(row.get("call_id") or f"unknown-{uuid.uuid4()}")
            row["worker_pid"] = os.getpid()
            self.writer().put(row)
        except Exception:  # noqa: BLE001 - the log must never fail a request
            _count_dropped(1, "callback error")

    # -- LiteLLM's events -----------------------------------------------------------------------------------
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._event(kwargs, None, RANK_SUCCESS)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._event(kwargs, kwargs.get("exception"), RANK_ATTEMPT_FAILED)

    def _event(self, kwargs: dict, exc: BaseException | None, rank: int) -> None:
        try:
            meta = (kwargs.get("standard_logging_object") or {}).get("metadata") or {}
            if meta.get("user_api_key_alias") == HEALTH_CHECK_ALIAS:
                return
            row = self._from_event(kwargs, exc, rank)
        except Exception:  # noqa: BLE001 - an unexpected payload shape must not fail the request
            _count_dropped(1, "callback error")
            return
        self.record(row)

    async def async_post_call_failure_hook(self, request_data, original_exception, user_api_key_dict,
                                           traceback_str=None):
        try:
            row = self._from_hook(request_data or {}, original_exception, user_api_key_dict)
        except Exception:  # noqa: BLE001
            _count_dropped(1, "callback error")
            return None
        if row:
            self.record(row)
        return None

    # -- rows -----------------------------------------------------------------------------------------------
    def _from_event(self, kwargs: dict, exc: BaseException | None, rank: int) -> dict:
        slo = kwargs.get("standard_logging_object") or {}
        meta = slo.get("metadata") or {}
        params = kwargs.get("litellm_params") or {}
        request = (params.get("proxy_server_request") or {}) if isinstance(params, dict) else {}
        body = request.get("body") or {}
        error = slo.get("error_information") or {}
        start = slo.get("startTime") or time.time()
        first = slo.get("completionStartTime")
        end = slo.get("endTime")
        status = None
        disconnected = _client_disconnected(kwargs, slo)
        if disconnected:
            # LiteLLM logs a stream the client hung up on as a success, flagged in its metadata (status 499).
            error = {**error, **disconnected}
            status = 499
        elif rank == RANK_SUCCESS:
            status = 200
        else:
            status = _status_of(exc)
            if status is None:
                try:
                    status = int(error.get("error_code") or 0) or None
                except (TypeError, ValueError):
                    status = None
        failed = rank != RANK_SUCCESS or bool(disconnected)
        error_type = (error.get("error_class") or _error_type(exc)) if failed else None
        requested = body.get("model") if isinstance(body, dict) else None
        served = slo.get("model_group")
        row = {
            "call_id": slo.get("litellm_call_id") or kwargs.get("litellm_call_id") or slo.get("id"),
            "ts": float(start),
            "kind": _kind(slo.get("call_type") or kwargs.get("call_type")),
            "model": requested or served,
            "served_by": served if requested and served and served != requested else None,
            "deployment": slo.get("api_base") or None,
            "outcome": classify(status, error_type),
            "status": status,
            "latency_ms": round(float(slo["response_time"]) * 1000, 3) if slo.get("response_time") else None,
            "ttft_ms": round((first - start) * 1000, 3) if slo.get("stream") and first and end and first < end else None,
            "stream": int(bool(slo.get("stream") or kwargs.get("stream"))),
            "finish_reason": _finish_reason(slo.get("response")) if rank == RANK_SUCCESS else None,
            "prompt_tokens": slo.get("prompt_tokens") if rank == RANK_SUCCESS else None,
            "completion_tokens": slo.get("completion_tokens") if rank == RANK_SUCCESS else None,
            "attempts": 1 + (_retries(kwargs.get("litellm_params") or {}, kwargs, slo) or 0),
            "user_agent": meta.get("user_api_key_user_agent") or slo.get("user_agent") or _header(request, "user-agent"),
            "key_alias": meta.get("user_api_key_alias"),
            "key_hash": meta.get("user_api_key_hash"),
            "error_type": error_type,
            "error_message": _clip(error.get("error_message") or slo.get("error_str") or (str(exc) if exc else None),
                                   ERROR_CHARS) if failed else None,
            "tools": _tool_count(body.get("tools") if isinstance(body, dict) else None),
            "rank": rank,
        }
        row.update(_queue_fields((kwargs.get("litellm_params") or {}).get("metadata"), kwargs.get("metadata"),
                                 slo.get("metadata")))
        if row["tools"] and rank == RANK_SUCCESS and not disconnected:
            row["tool_calls"] = _call_count(slo.get("response"))
        if self.content:
            row["prompt"] = _clip(_text_of_messages(kwargs.get("messages") or slo.get("messages")), CONTENT_CHARS)
            if rank == RANK_SUCCESS:
                row["answer"] = _clip(_answer_text(slo.get("response")), CONTENT_CHARS)
        return row

    def _from_hook(self, data: dict, exc: BaseException, key) -> dict:
        request = data.get("proxy_server_request") or {}
        meta = data.get("metadata") or data.get("litellm_metadata") or {}
        status = _status_of(exc)
        error_type = _error_type(exc)
        logging_obj = data.get("litellm_logging_obj")
        start = getattr(logging_obj, "start_time", None)
        start_ts = start.timestamp() if hasattr(start, "timestamp") else None
        row = {
            "call_id": data.get("litellm_call_id") or getattr(logging_obj, "litellm_call_id", None),
            "ts": start_ts or time.time(),
            "kind": _kind(getattr(logging_obj, "call_type", None)) or _kind_of_route(request.get("url")),
            "model": data.get("model"),
            "outcome": classify(status or 500, error_type),
            "status": status or 500,
            # An attempt's event knows the latency better; the hook only when nothing was attempted.
            "latency_ms": round((time.time() - start_ts) * 1000, 3) if start_ts else None,
            "stream": int(bool(data.get("stream"))),
            "attempts": 1 + retries if (retries := _retries(data)) is not None else 0,
            "user_agent": meta.get("user_api_key_user_agent") or _header(request, "user-agent"),
            "key_alias": getattr(key, "key_alias", None),
            "key_hash": getattr(key, "token", None),  # LiteLLM's hash of the key (api_key would be the key itself)
            "error_type": error_type,
            "error_message": _clip(getattr(exc, "message", None) or str(exc), ERROR_CHARS),
            "tools": _tool_count(data.get("tools")),
            "rank": RANK_PROXY_ERROR,
            **_queue_fields(meta),
        }
        if self.content:
            row["prompt"] = _clip(_text_of_messages(data.get("messages") or data.get("prompt")), CONTENT_CHARS)
        return row


def _header(request: dict, name: str) -> str | None:
    headers = request.get("headers") or {}
    for key, value in headers.items() if isinstance(headers, dict) else ():
        if key.lower() == name:
            return value
    return None


def _kind_of_route(url: object) -> str | None:
    text = str(url or "")
    if "embeddings" in text:
        return "embeddings"
    if "chat/completions" in text:
        return "chat"
    if "completions" in text:
        return "completion"
    return None


def _retries(*holders: dict) -> int | None:
    """The Router's count of retries made (it writes metadata["attempted_retries"] before each retry)."""
    for holder in holders:
        for key in ("metadata", "litellm_metadata"):
            meta = holder.get(key) if isinstance(holder, dict) else None
            if isinstance(meta, dict) and isinstance(meta.get("attempted_retries"), int):
                return meta["attempted_retries"]
    return None


def _client_disconnected(kwargs: dict, slo: dict) -> dict | None:
    """LiteLLM's error information when the client hung up on a stream, else None."""
    for meta in ((kwargs.get("litellm_params") or {}).get("metadata"), kwargs.get("metadata"), slo.get("metadata")):
        if isinstance(meta, dict) and meta.get("client_disconnected"):
            info = meta.get("error_information") or {}
            return {"error_class": info.get("error_class") or "ClientDisconnected",
                    "error_message": info.get("error_message") or "Client disconnected the request"}
    return None


def _finish_reason(response: object) -> str | None:
    """The first choice's finish_reason; a stream the client cut has none."""
    if isinstance(response, dict):
        for choice in response.get("choices") or []:
            if isinstance(choice, dict):
                return choice.get("finish_reason")
    return None


def _queue_fields(*metas: object) -> dict:
    """The queue's priority and wait (llmops.proxy.queue's metadata keys), from the first metadata that has them."""
    for meta in metas:
        if isinstance(meta, dict) and PRIORITY_META in meta:
            return {"priority": meta.get(PRIORITY_META), "queue_wait_ms": meta.get(WAIT_META)}
    return {}


def _tool_count(tools: object) -> int | None:
    """How many tools a request offered; None when it offered none."""
    return len(tools) if isinstance(tools, list) and tools else None


def _call_count(response: object) -> int:
    """How many tool calls the first choice's answer made (a stream's assembled answer too)."""
    if isinstance(response, dict):
        for choice in response.get("choices") or []:
            if isinstance(choice, dict):
                message = choice.get("message") or choice.get("delta") or {}
                return len(message.get("tool_calls") or []) if isinstance(message, dict) else 0
    return 0


def _answer_text(response: object) -> str | None:
    if isinstance(response, dict):
        choices = response.get("choices") or []
        texts = []
        for choice in choices:
            message = choice.get("message") or choice.get("delta") or {}
            texts.append(str(message.get("content") or choice.get("text") or ""))
        return "\n".join(texts) if texts else None
    return response if isinstance(response, str) else None


_dropped_counter = None


def _count_dropped(count: int, reason: str) -> None:
    """llmops_requestlog_dropped_rows_total in the proxy's own /metrics (prometheus_client is already there)."""
    global _dropped_counter
    if _dropped_counter is None:
        from prometheus_client import Counter

        _dropped_counter = Counter("llmops_requestlog_dropped_rows", "Request-log rows dropped (queue full or database not writable)")
    _dropped_counter.inc(count)


request_log = RequestLog()
