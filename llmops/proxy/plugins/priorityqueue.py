"""The priority queue plug-in: at most N generations in flight to each backend's model, the rest wait here.

Loaded by the proxy from `litellm_settings.callbacks` (the start script adds
"llmops.proxy.plugins.priorityqueue.priority_queue" when QUEUE_ENABLED is on; docs/litellm.md, "The priority
queue"). Its configuration comes in LLMOPS_QUEUE (JSON, written by llmops.proxy.launch).

- `async_pre_call_hook` (before the Router picks a deployment) takes the body's `priority` out, so LiteLLM's own
  scheduler never sees it, and waits until one deployment of the model group has a free slot; it reserves that
  slot. A bad priority is a 400, a full queue or a wait past QUEUE_TIMEOUT a 429 with Retry-After: raised here,
  before any deployment is called, so no backend is ever cooled down for them.
- `async_filter_deployments` (the Router's per-attempt filter, after cooldown and health filtering) narrows the
  healthy deployments to the reserved one, so the request goes where its slot is; a retry after that deployment
  failed (LiteLLM's `previous_models` breadcrumbs) moves the slot to another free one when there is one.
- The slot is given back by whichever comes first: the success hook (non-streamed), the stream's last chunk (the
  one with a finish_reason, in `async_post_call_streaming_iterator_hook`, before it is relayed) or that iterator's
  `finally` (a client that closed mid-stream, an error), the failure hook (backend error after retries, a timeout,
  a later hook rejecting), or the end of the request's own asyncio task (anything else): `release` is idempotent.
- A client that leaves while queued is noticed at once (the ASGI channel's `http.disconnect`) and leaves the line.
- LiteLLM's own health checks (the background ones and `/health`) call a backend outside every proxy hook, so the
  queue cannot hold them; `log_pre_api_call` (run before every backend call) counts each one as load on its
  backend (`llmops_queue_health_checks_total`). The rendered config makes them one token long.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import os
import sys
import time
import uuid
from urllib.parse import urlsplit

from litellm.integrations.custom_logger import CustomLogger

from ..counts import HEALTH_CHECK_ALIAS
from ..queue import CLIENT_LEFT, PRIORITY_META, REASONS, WAIT_META, BadPriority, Rejected, Ticket, parse_priority
from .queuestate import LocalState

TOKEN_KEY = "llmops_queue_token"
QUEUED_CALLS = ("acompletion", "completion", "atext_completion", "text_completion")
EMBEDDING_CALLS = ("aembedding", "embedding")
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SLOTS_REFRESH = 30.0  # seconds between two reads of a backend's slot count
SLOTS_GUESS_REFRESH = 2.0  # the same while the count is a guess (the model not loaded yet, the backend away)
GAUGE_REFRESH = 0.5  # seconds between two reads of the shared (Redis) state for the gauges


def _metadata(data: dict) -> dict:
    meta = data.get("metadata")
    if not isinstance(meta, dict):
        meta = data["metadata"] = {}
    return meta


def _token_of(holder: dict | None) -> str | None:
    if not isinstance(holder, dict):
        return None
    for key in ("metadata", "litellm_metadata"):
        meta = holder.get(key)
        if isinstance(meta, dict) and isinstance(meta.get(TOKEN_KEY), str):
            return meta[TOKEN_KEY]
    return None


def _redis_error() -> type[BaseException]:
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - redis is a LiteLLM dependency
        return OSError
    return RedisError


def deployment_key(api_base: str, model: str) -> str:
    """A slot pool's name: the backend's base URL and the model as the backend knows it."""
    return f"{api_base.rstrip('/')}|{model}"


def _failed_ids(request_kwargs: dict | None) -> set[str]:
    """The ids of the deployments that already failed this request: LiteLLM's retry breadcrumbs
    (`previous_models` in the request's metadata, one record per failed attempt, router.py)."""
    ids: set[str] = set()
    for key in ("metadata", "litellm_metadata"):
        meta = (request_kwargs or {}).get(key)
        records = meta.get("previous_models") if isinstance(meta, dict) else None
        for record in records if isinstance(records, (list, tuple)) else ():
            if isinstance(record, dict) and isinstance(record.get("deployment_id"), str):
                ids.add(record["deployment_id"])
    return ids


def key_of_deployment(deployment: dict) -> str | None:
    params = deployment.get("litellm_params") or {}
    model, base = str(params.get("model") or ""), params.get("api_base")
    if not base or "/" not in model:
        return None
    return deployment_key(str(base), model.split("/", 1)[1])


def find_request(max_depth: int = 40):
    """The Starlette request this hook runs for, from the awaiting frames (LiteLLM hands hooks no request)."""
    try:
        from starlette.requests import Request
    except ImportError:  # pragma: no cover - the proxy always has starlette
        return None
    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        candidate = frame.f_locals.get("request")
        if isinstance(candidate, Request):
            return candidate
        frame = frame.f_back
    return None


async def wait_disconnect(request) -> bool:
    """Return once the client has gone (the body has been read, so the channel only says `http.disconnect`)."""
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            return True


def client_gone():
    """A coroutine that returns once the client has gone, or None when its request is not found. The state calls
    it from inside `acquire` for a request that must wait (the awaiting frames lead to the request then): a frame
    walk costs ~0.1 ms through LiteLLM's frames, so a request that finds a free slot does not pay it."""
    found = find_request()
    return wait_disconnect(found) if found is not None else None


def parse_slots_text(text: str, model: str) -> int | None:
    """llm_backend_slots{model="..."} from a backend's /metrics text, or None when it has no such gauge."""
    for line in text.splitlines():
        if line.startswith("llm_backend_slots{") and f'model="{model}"' in line:
            try:
                return max(1, int(float(line.rsplit(" ", 1)[1])))
            except ValueError:
                return None
    return None


WAITING_HELP = "Requests waiting in the proxy's queue, by model group and priority."
BUSY_HELP = "Slots held by requests in flight, by backend and model."
SLOTS_HELP = "Slots of each backend's model (its parallelism)."


class PriorityQueue(CustomLogger):
    """The LiteLLM plug-in; its state starts on first use in each worker."""

    def __init__(self, environ: dict[str, str] | None = None):
        super().__init__()
        self.environ = os.environ if environ is None else environ
        self._config: dict | None = None
        self._state: LocalState | None = None
        self._slots: dict[str, tuple[int, float, bool]] = {}  # deployment -> (slots, read at, sure)
        self._metrics = None
        self._refresher: asyncio.Task | None = None
        self._warned_at = -1e9

    # -- configuration --------------------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        if self._config is None:
            self._config = json.loads(self.environ.get("LLMOPS_QUEUE") or "{}")
        return self._config

    @property
    def shared(self) -> bool:
        """True when the state lives in Redis (several workers or proxies), False for this process alone."""
        return bool(self.config.get("redis_url"))

    @property
    def state(self):
        if self._state is None:
            cfg = self.config
            common = {"max_waiting": int(cfg.get("max", 512)), "timeout": float(cfg.get("timeout", 60)),
                      "ageing": float(cfg.get("ageing", 1.0))}
            if self.shared:
                from .redisstate import RedisState

                self._state = RedisState(cfg["redis_url"], lease=float(cfg.get("lease", 10.0)), **common)
            else:
                self._state = LocalState(**common)
            self._state.on_admit = self._observe_admit
            self._state.on_reject = self._observe_reject
            self.metrics()
        return self._state

    async def _ensure_group(self, group: str) -> bool:
        """Declare a model group's deployments with their slot counts (read again every SLOTS_REFRESH s)."""
        bases = (self.config.get("groups") or {}).get(group)
        if not bases:
            return False
        now = time.monotonic()

        def stale(key: str) -> bool:
            if key not in self._slots:
                return True
            _, read_at, sure = self._slots[key]
            return now - read_at > (SLOTS_REFRESH if sure else SLOTS_GUESS_REFRESH)

        old = [key for key in bases if stale(key)]
        if old or not self.state.knows(group):
            for key in old:
                slots, sure = await self._read_slots(key)
                self._slots[key] = (slots, now, sure)
            await self.state.declare(group, [(key, self._slots[key][0]) for key in bases])
        return True

    async def _read_slots(self, key: str) -> tuple[int, bool]:
        """(slots, sure): the embedded backend's llm_backend_slots{model} (slots helper's gauge); while the model is
        not loaded, BACKEND_NUM_PARALLEL (a guess, read again soon); OLLAMA_NUM_PARALLEL for an Ollama."""
        base, model = key.split("|", 1)
        ollama = int(self.config.get("ollama_num_parallel", 1))
        embedded = int(self.config.get("backend_num_parallel", 1))
        try:
            import httpx

            async with httpx.AsyncClient(timeout=2.0) as client:
                response = await client.get(f"{base}/metrics")
        except Exception:  # noqa: BLE001 - a backend that does not answer now is asked again soon
            return (self._slots[key][0] if key in self._slots else ollama), False
        if response.status_code != 200 or "llm_backend_" not in response.text:
            return ollama, True  # not the embedded backend: Ollama does not say; OLLAMA_NUM_PARALLEL in .env does
        found = parse_slots_text(response.text, model)
        return (found, True) if found else (embedded, False)

    # -- LiteLLM's hooks ------------------------------------------------------------------------------------
    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        from litellm.proxy._types import ProxyException

        raw = data.pop("priority", None)
        try:
            priority = parse_priority(raw, int(self.config.get("default_priority", 10)))
        except BadPriority as exc:
            raise ProxyException(message=str(exc), type="invalid_request_error", param="priority", code=400) from None
        meta = _metadata(data)
        meta[PRIORITY_META] = priority
        if call_type in EMBEDDING_CALLS:
            self.metrics()["passed"].labels(kind="embedding").inc()
            return data
        group = data.get("model")
        try:
            known = call_type in QUEUED_CALLS and isinstance(group, str) and await self._ensure_group(group)
        except (OSError, ConnectionError, _redis_error()) as exc:
            return self._unqueued(data, exc)
        if not known:
            self.metrics()["passed"].labels(kind="other").inc()
            return data
        if self.shared and self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_gauges())
        token = uuid.uuid4().hex  # our own: litellm_call_id can be chosen by the client
        try:
            ticket = await self.state.acquire(group, priority, token, client_gone)
        except (OSError, ConnectionError, _redis_error()) as exc:
            return self._unqueued(data, exc)
        except Rejected as exc:
            if exc.waited is not None:
                meta[WAIT_META] = round(exc.waited * 1000, 3)
            if exc.reason == CLIENT_LEFT:
                raise ProxyException(message=exc.message, type="client_disconnected", param=None, code=499) from None
            raise ProxyException(message=exc.message, type="rate_limit_error", param=None, code=429,
                                 headers={"retry-after": str(exc.retry_after)}, openai_code="queue_" + exc.reason) from None
        meta[TOKEN_KEY] = token
        meta[WAIT_META] = round((ticket.wait or 0.0) * 1000, 3)
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(lambda _task, token=token: self.release(token))
        return data

    def _unqueued(self, data: dict, exc: BaseException) -> dict:
        """Redis unreachable: the request goes through unqueued rather than the proxy failing it (counted; one line
        in the proxy's log a minute at most)."""
        self.metrics()["passed"].labels(kind="queue_unavailable").inc()
        now = time.monotonic()
        if now - self._warned_at > 60:
            self._warned_at = now
            print(f"llmops queue: shared state unavailable ({type(exc).__name__}); requests pass unqueued",
                  file=sys.stderr, flush=True)
        return data

    async def async_filter_deployments(self, model, healthy_deployments, messages, request_kwargs=None,
                                       parent_otel_span=None):
        token = _token_of(request_kwargs)
        if token is None or self._state is None:
            return healthy_deployments
        reserved = self.state.deployment_of(token)
        if reserved is None:
            return healthy_deployments
        by_key = {}
        for deployment in healthy_deployments:
            by_key.setdefault(key_of_deployment(deployment), deployment)
        # A retry: the deployments that already failed this request are not chosen again while another is free.
        failed = _failed_ids(request_kwargs)
        fresh = {k: d for k, d in by_key.items() if (d.get("model_info") or {}).get("id") not in failed}
        if reserved in fresh:
            return [fresh[reserved]]
        # Its backend left the healthy list (cooled down, failed its health check) or failed this request, or this
        # is a fallback to another model: move the slot to a free healthy deployment of the same pool kind; else
        # retry where the slot is, or let LiteLLM choose.
        try:
            moved = self.state.move(token, [k for k in fresh if k is not None])
            if inspect.isawaitable(moved):
                moved = await moved
        except (OSError, ConnectionError, _redis_error()):
            moved = None  # the shared state is away: LiteLLM chooses
        if moved:
            return [by_key[moved]]
        return [by_key[reserved]] if reserved in by_key else healthy_deployments

    async def async_post_call_streaming_deployment_hook(self, request_data, response_chunk, call_type):
        """Give a stream's slot back at the backend's last chunk: LiteLLM's stream wrapper calls this hook (with the
        call's details, where the token is) once it has the chunk that carries the finish_reason, before the chunk
        is relayed. The backend's sequence has ended by then, and the next request's hop to the backend overlaps
        the end of this stream. A stream that ends without one (a client gone mid-stream, an error) is given back
        by the failure hook or the end of the request's task. Not the iterator hook: overriding that puts every
        stream on LiteLLM's wrapped path, a thread hop of ~0.25 ms at each stream's end (docs/queue.md)."""
        holder = request_data if isinstance(request_data, dict) else {}
        token = _token_of(holder) or _token_of(holder.get("litellm_params"))
        if token is not None:
            self.release(token)
        return None

    async def async_post_call_success_hook(self, data, user_api_key_dict, response):
        token = _token_of(data)
        if token:
            self.release(token)
        return response

    async def async_post_call_failure_hook(self, request_data, original_exception, user_api_key_dict,
                                           traceback_str=None):
        token = _token_of(request_data)
        if token:
            self.release(token)
        return None

    def release(self, token: str) -> None:
        if self._state is not None:
            self._state.release(token)

    # -- traffic that goes around the queue -----------------------------------------------------------------
    def log_pre_api_call(self, model, messages, kwargs):
        """Count a LiteLLM health check (background or `/health`) as it goes to its backend: it runs outside every
        proxy hook, so it takes no slot and waits for none (docs/queue.md, "Traffic that goes around it")."""
        try:
            params = kwargs.get("litellm_params") or {}
            meta = params.get("metadata") or {}
            if not isinstance(meta, dict) or meta.get("user_api_key_alias") != HEALTH_CHECK_ALIAS:
                return
            parts = urlsplit(str(params.get("api_base") or ""))  # the endpoint's URL, e.g. http://host:11434/api/chat
            backend = f"{parts.scheme}://{parts.netloc}" if parts.netloc else "unknown"
            self.metrics()["health_checks"].labels(backend=backend, model=str(model)).inc()
        except Exception:  # noqa: BLE001 - a logging hook must never fail the call it watches
            pass

    # -- metrics --------------------------------------------------------------------------------------------
    def metrics(self) -> dict:
        """The queue's families in the proxy's own registry (LiteLLM's /metrics/ serves it)."""
        if self._metrics is None:
            from prometheus_client import REGISTRY, Counter, Histogram

            self._metrics = {
                "wait": Histogram("llmops_queue_wait_seconds", "Time a request waited in the proxy's queue for a slot.",
                                  ["priority"], buckets=WAIT_BUCKETS),
                "rejected": Counter("llmops_queue_rejected", "Requests the queue refused, by reason.", ["reason"]),
                "passed": Counter("llmops_queue_passed", "Requests that pass without a slot (embeddings, other routes).",
                                  ["kind"]),
                "health_checks": Counter("llmops_queue_health_checks",
                                         "LiteLLM health-check generations sent to a backend outside the queue.",
                                         ["backend", "model"]),
            }
            for reason in REASONS:
                self._metrics["rejected"].labels(reason=reason)
            if self.shared:
                # Several workers: each process's registry is added up from files (LiteLLM's multiprocess mode),
                # where a collector is not read; every worker writes the same shared read, the newest one counts.
                from prometheus_client import Gauge

                mode = {"multiprocess_mode": "mostrecent"}
                self._metrics["waiting"] = Gauge("llmops_queue_waiting", WAITING_HELP, ["model", "priority"], **mode)
                self._metrics["busy"] = Gauge("llmops_queue_busy_slots", BUSY_HELP, ["backend", "model"], **mode)
                self._metrics["slots"] = Gauge("llmops_queue_slots", SLOTS_HELP, ["backend", "model"], **mode)
            else:
                REGISTRY.register(_StateCollector(self))
        return self._metrics

    async def _refresh_gauges(self) -> None:
        """Shared state: read it once every GAUGE_REFRESH s into this worker's gauges (not summed over workers)."""
        seen: dict[str, set] = {"waiting": set(), "busy": set(), "slots": set()}
        metrics = self.metrics()
        while True:
            try:
                snap = await self.state.snapshot()
                values = {"waiting": {(g, str(p)): n for (g, p), n in snap.waiting_by_priority().items()},
                          "busy": {tuple(k.split("|", 1)): n for k, n in snap.busy.items()},
                          "slots": {tuple(k.split("|", 1)): n for k, n in snap.slots.items()}}
                for name, now in values.items():
                    for labels in seen[name] - set(now):
                        metrics[name].labels(*labels).set(0)
                    for labels, count in now.items():
                        metrics[name].labels(*labels).set(count)
                    seen[name] |= set(now)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis away for a moment: the gauges keep their last values
                pass
            await asyncio.sleep(GAUGE_REFRESH)

    def _observe_admit(self, ticket: Ticket) -> None:
        self.metrics()["wait"].labels(priority=str(ticket.priority)).observe(ticket.wait or 0.0)

    def _observe_reject(self, rejection: Rejected) -> None:
        self.metrics()["rejected"].labels(reason=rejection.reason).inc()


class _StateCollector:
    """Gauges read from the state at scrape time: waiting by model and priority, slots and busy by backend."""

    def __init__(self, plugin: PriorityQueue):
        self.plugin = plugin

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        waiting = GaugeMetricFamily("llmops_queue_waiting", WAITING_HELP, labels=["model", "priority"])
        busy = GaugeMetricFamily("llmops_queue_busy_slots", BUSY_HELP, labels=["backend", "model"])
        slots = GaugeMetricFamily("llmops_queue_slots", SLOTS_HELP, labels=["backend", "model"])
        state = self.plugin._state
        if state is not None:
            for (group, priority), count in sorted(state.rules.waiting_by_priority().items()):
                waiting.add_metric([group, str(priority)], count)
            for key, count in sorted(state.rules.slots.items()):
                base, model = key.split("|", 1)
                slots.add_metric([base, model], count)
                busy.add_metric([base, model], state.rules.busy.get(key, 0))
        yield waiting
        yield busy
        yield slots


priority_queue = PriorityQueue()


def _watch_every_backend_call(plugin: PriorityQueue) -> None:
    """List the plug-in in `litellm.input_callback`, whose members LiteLLM hands every backend call before it is
    made (log_pre_api_call). LiteLLM adds its `callbacks` there only as a proxied request is set up, which its own
    health checks skip: listed at load, the health checks that run before the first request are counted too."""
    import litellm

    if plugin not in litellm.input_callback:
        litellm.input_callback.append(plugin)


_watch_every_backend_call(priority_queue)
