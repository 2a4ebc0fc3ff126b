"""One health probe per component; each takes its URL, timeout and HTTP session and returns a ProbeResult."""
from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import requests

from . import outcomes
from .errors import MetricsUnavailable
from .proxy import counts
from .proxy.key import auth_headers

CANARY_USER_AGENT = "llmops-canary/0.1"
PROXY_TIMEOUT = 10.0
HEALTHY, UNHEALTHY, OFFLINE = "healthy", "unhealthy", "offline"

@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw: status word, latency, a one-line detail, a failure kind and extra data."""

    status: str
    latency_ms: float | None
    detail: str
    error: str = ""  # "", "timeout", "offline", "auth", "http", "empty", "unavailable", "pending"
    data: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == HEALTHY


def pending(detail: str = "not checked yet") -> ProbeResult:
    """The state of a component before its first probe has finished."""
    return ProbeResult(OFFLINE, None, detail, "pending")


class _Failed(Exception):
    """A request failed at the transport level; kind is a ProbeResult.error value."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def host_port(url: str) -> str:
    """'http://127.0.0.1:11434' -> '127.0.0.1:11434' (short, bounded label value)."""
    return urlsplit(url).netloc or url


def _causes(exc: BaseException):
    """exc, then what it wraps: requests and urllib3 nest the OSError in args and __context__."""
    seen, todo = set(), [exc]
    while todo:
        item = todo.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [a for a in getattr(item, "args", ()) if isinstance(a, BaseException)]
        todo += [c for c in (item.__cause__, item.__context__) if c is not None]
        reason = getattr(item, "reason", None)  # urllib3's MaxRetryError keeps the cause here
        if isinstance(reason, BaseException):
            todo.append(reason)


def _connection_failure(exc: BaseException, url: str) -> str:
    """Say which connection failure it was: a refused connect, a reset, or a close without an answer."""
    where = host_port(url)
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return f"{where} unreachable (connection refused)"
        if isinstance(cause, ConnectionResetError):
            return f"{where} reset the connection (connection reset by peer, no answer)"
        if isinstance(cause, http.client.RemoteDisconnected):
            return f"{where} closed the connection without an answer"
    return f"{where} unreachable (connection refused or reset)"


def _call(session, method: str, url: str, timeout: float, **kwargs):
    """Send one request; map requests' errors to _Failed at this boundary."""
    try:
        return session.request(method, url, timeout=timeout, **kwargs)
    except requests.Timeout as exc:
        raise _Failed("timeout", f"timeout: no answer from {host_port(url)} within {timeout:g} s") from exc
    except requests.ConnectionError as exc:
        raise _Failed("offline", _connection_failure(exc, url)) from exc
    except requests.RequestException as exc:
        raise _Failed("http", f"request to {host_port(url)} failed: {type(exc).__name__}") from exc


def _json(response, what: str) -> dict:
    try:
        body = response.json()
    except ValueError as exc:
        # Say what was wrong with the body (cut short, not JSON at all) so a broken backend is told from a down one.
        raise _Failed("http", f"{what} answered HTTP {response.status_code} without JSON (malformed body: {exc})") from exc
    if not isinstance(body, dict):
        raise _Failed("http", f"{what} answered unexpected JSON")
    return body


def _timed(clock: Callable[[], float], body: Callable[[], ProbeResult]) -> ProbeResult:
    """Run a probe body, stamp its latency and turn transport failures into a result."""
    started = clock()
    try:
        result = body()
    except _Failed as failure:
        status = OFFLINE if failure.kind == "offline" else UNHEALTHY
        result = ProbeResult(status, None, failure.detail, failure.kind)
    latency = round((clock() - started) * 1000.0, 3)
    return ProbeResult(result.status, latency, result.detail, result.error, result.data)


def probe_proxy(session, base_url: str, key: str, timeout: float = PROXY_TIMEOUT, clock=time.perf_counter) -> ProbeResult:
    """Healthy iff GET /v1/models with the key lists at least one model (the user's rule)."""

    def body() -> ProbeResult:
        response = _call(session, "GET", f"{base_url}/v1/models", timeout, headers=auth_headers(key))
        if response.status_code == 500:
            # LiteLLM 1.108.7 answers 500 when no key is sent (its auth error path needs prisma).
            hint = "no key configured for the dashboard" if not key else "LiteLLM answers 500 when no key reaches it"
            return ProbeResult(UNHEALTHY, None, f"/v1/models answered HTTP 500: auth misconfigured ({hint})", "auth")
        if response.status_code in (400, 401, 403):
            # A wrong key gets 400 "No connected db" from LiteLLM 1.108.7.
            return ProbeResult(
                UNHEALTHY, None, f"/v1/models answered HTTP {response.status_code}: auth misconfigured (wrong key?)", "auth"
            )
        if response.status_code != 200:
            return ProbeResult(UNHEALTHY, None, f"/v1/models answered HTTP {response.status_code}", "http")
        models = [str(m.get("id")) for m in _json(response, "/v1/models").get("data") or [] if isinstance(m, dict)]
        if not models:
            return ProbeResult(UNHEALTHY, None, "/v1/models lists no models", "empty", {"models": []})
        plural = "s" if len(models) != 1 else ""
        return ProbeResult(HEALTHY, None, f"lists {len(models)} model{plural}", "", {"models": models})

    return _timed(clock, body)


def _loaded(entry: dict) -> dict:
    return {
        "name": entry.get("name") or entry.get("model"),
        "size": int(entry.get("size") or 0),
        "size_vram": int(entry.get("size_vram") or 0),
        "expires_at": entry.get("expires_at"),
    }


def probe_backend(session, base_url: str, timeout: float = 3.0, clock=time.perf_counter) -> ProbeResult:
    """Ask one Ollama-API backend directly: /api/version, /api/tags (present), /api/ps (loaded)."""

    def body() -> ProbeResult:
        answered = _version(session, base_url, timeout)
        if not answered.ok:
            return answered
        version = answered.data["version"]
        response = _call(session, "GET", f"{base_url}/api/tags", timeout)
        if response.status_code != 200:
            return ProbeResult(UNHEALTHY, None, f"/api/tags answered HTTP {response.status_code}", "http")
        present = [
            {"name": m.get("name") or m.get("model"), "size": int(m.get("size") or 0), "modified_at": m.get("modified_at")}
            for m in _json(response, "/api/tags").get("models") or []
        ]
        response = _call(session, "GET", f"{base_url}/api/ps", timeout)
        loaded = [_loaded(m) for m in _json(response, "/api/ps").get("models") or []] if response.status_code == 200 else []
        data = {"version": version, "present": present, "loaded": loaded}
        if not present:
            return ProbeResult(UNHEALTHY, None, "answers but has no models", "empty", data)
        plural = "s" if len(present) != 1 else ""
        return ProbeResult(HEALTHY, None, f"{len(present)} model{plural} present, {len(loaded)} loaded", "", data)

    return _timed(clock, body)


def _probe_ready(session, base_url: str, timeout: float, clock, version_path: str,
                 version_of: Callable[[dict], str | None]) -> ProbeResult:
    """Healthy iff /-/ready answers 200 (Prometheus's and Alertmanager's rule); the version is read when it answers."""

    def body() -> ProbeResult:
        response = _call(session, "GET", f"{base_url}/-/ready", timeout)
        if response.status_code != 200:
            return ProbeResult(UNHEALTHY, None, f"/-/ready answered HTTP {response.status_code}", "http")
        version = None
        try:
            info = _call(session, "GET", f"{base_url}{version_path}", timeout)
            version = version_of(_json(info, version_path)) if info.status_code == 200 else None
        except _Failed:
            pass  # the version is decoration; readiness already answered
        return ProbeResult(HEALTHY, None, "ready", "", {"version": version})

    return _timed(clock, body)


def probe_prometheus(session, base_url: str, timeout: float = 3.0, clock=time.perf_counter) -> ProbeResult:
    """Healthy iff /-/ready answers 200; the version comes from buildinfo when it answers."""
    return _probe_ready(session, base_url, timeout, clock, "/api/v1/status/buildinfo",
                        lambda doc: (doc.get("data") or {}).get("version"))


def probe_alertmanager(session, base_url: str, timeout: float = 3.0, clock=time.perf_counter) -> ProbeResult:
    """Healthy iff /-/ready answers 200; the version comes from /api/v2/status when it answers."""
    return _probe_ready(session, base_url, timeout, clock, "/api/v2/status",
                        lambda doc: (doc.get("versionInfo") or {}).get("version"))


# The readiness check of a service that speaks Redis's protocol, not HTTP (ReadyCheck's path).
REDIS_PING = "redis:PING"


def probe_redis(base_url: str, timeout: float = 3.0, clock=time.perf_counter) -> ProbeResult:
    """Healthy iff PING answers (redis-py, one connection, no retry); the version from INFO server. A URL with a
    password (redis://[user]:password@host:port/db, as REDIS_URL may be) logs in first; the password is never shown.
    The scheme is not read: the readiness check hands it http://host:port."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    parts = urlsplit(base_url)

    def body() -> ProbeResult:
        client = redis.Redis(host=parts.hostname or "127.0.0.1", port=parts.port or 6379,
                             username=unquote(parts.username) if parts.username else None,
                             password=unquote(parts.password) if parts.password else None,
                             socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
        try:
            client.ping()
            version = str(client.info("server").get("redis_version", "?"))
        except redis.AuthenticationError as exc:
            said = str(exc)[:80]
            detail = f"AUTH refused: {said}" if parts.password else f"PING answered NOAUTH (a password is needed): {said}"
            return ProbeResult(UNHEALTHY, None, detail, "http")
        except redis.TimeoutError as exc:
            raise _Failed("timeout", f"no answer in {timeout:g} s") from exc
        except redis.ConnectionError as exc:
            raise _Failed("offline", f"cannot connect: {_reason(exc)}") from exc
        except redis.RedisError as exc:
            return ProbeResult(UNHEALTHY, None, f"PING answered {str(exc)[:80]}", "http")
        finally:
            client.close()
        return ProbeResult(HEALTHY, None, f"PONG, version {version}", "", {"version": version})

    return _timed(clock, body)


def _reason(exc: BaseException) -> str:
    """The OS's words for a failed connection (`Connection refused`), from the error redis-py wraps."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(exc).rsplit(". ", 1)[-1].rstrip(".") or type(exc).__name__


def traffic_queries(window: str = "5m") -> dict[str, str]:
    """PromQL for the exact real requests over the window (canary and non-model routes excluded)."""
    return {"by_model_and_status": counts.count_expr(window, by=("requested_model", "status_code"))}


def probe_traffic(
    prom,
    window: str = "5m",
    min_requests: int = 5,
    min_ratio: float = 0.9,
    clock=time.perf_counter,
) -> ProbeResult:
    """Outcomes of the real requests of the last window, counted from zero (llmops/proxy/counts.py).

    Only server errors and timeouts count against health (outcomes.FAILURES); client errors and
    429s are reported, by class and count, without turning the component red.

    `prom` is anything with `query(promql)` that raises MetricsUnavailable (a PromAPI).
    """

    def body() -> ProbeResult:
        try:
            found = counts.tally(prom.query(traffic_queries(window)["by_model_and_status"]))
        except MetricsUnavailable as exc:
            return ProbeResult(OFFLINE, None, str(exc), "unavailable")
        by_class = found["outcomes"]
        ok = by_class[outcomes.OK]
        failed = sum(by_class[name] for name in outcomes.FAILURES)
        judged = ok + failed
        ratio = ok / judged if judged else None
        failures = counts.failure_summary(found, window)
        data = {
            "window": window,
            "requests": found["requests"],
            "failed": failed,
            "rate_limited": by_class[outcomes.RATE_LIMITED],
            "success_ratio": None if ratio is None else round(ratio, 4),
            "outcomes": by_class,
            "status_codes": found["status_codes"],
            "failure_summary": failures,
        }
        if not found["requests"]:
            return ProbeResult(HEALTHY, None, f"no real requests in the last {window}", "", data)
        summary = failures or f"all {found['requests']} real requests succeeded in the last {window}"
        if judged >= min_requests and ratio is not None and ratio < min_ratio:
            return ProbeResult(UNHEALTHY, None, summary, "http", data)
        return ProbeResult(HEALTHY, None, summary, "", data)

    return _timed(clock, body)


def probe_canary(
    session, proxy_url: str, key: str, model: str, timeout: float = 30.0, clock=time.perf_counter
) -> ProbeResult:
    """One tiny chat completion through the proxy (max_tokens 1) with the canary's own User-Agent.

    Priority 0, the most urgent: a busy stack serves its own health check first instead of queueing it into a 429
    (docs/queue.md); without the queue LiteLLM reads 0 as no priority.
    """

    def body() -> ProbeResult:
        headers = {"User-Agent": CANARY_USER_AGENT, "Content-Type": "application/json", **auth_headers(key)}
        payload = {"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1, "priority": 0}
        response = _call(session, "POST", f"{proxy_url}/v1/chat/completions", timeout, headers=headers, json=payload)
        if response.status_code != 200:
            kind = "auth" if response.status_code in (400, 401, 403) else "http"
            return ProbeResult(UNHEALTHY, None, f"chat completion for {model} answered HTTP {response.status_code}", kind)
        if not _json(response, "chat completion").get("choices"):
            return ProbeResult(UNHEALTHY, None, f"chat completion for {model} returned no choices", "empty")
        return ProbeResult(HEALTHY, None, f"chat completion for {model} answered", "", {"model": model})

    return _timed(clock, body)


def probe_embedding_canary(
    session, proxy_url: str, key: str, model: str, timeout: float = 30.0, clock=time.perf_counter
) -> ProbeResult:
    """One one-word embeddings request through the proxy with the canary's User-Agent: the embedding route works."""

    def body() -> ProbeResult:
        headers = {"User-Agent": CANARY_USER_AGENT, "Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        response = _call(session, "POST", f"{proxy_url}/v1/embeddings", timeout, headers=headers,
                         json={"model": model, "input": "ping"})
        if response.status_code != 200:
            kind = "auth" if response.status_code in (401, 403) else "http"
            return ProbeResult(UNHEALTHY, None, f"embeddings for {model} answered HTTP {response.status_code}", kind,
                               {"model": model, "kind": "embedding"})
        data = _json(response, "embeddings").get("data") or []
        vector = data[0].get("embedding") if data and isinstance(data[0], dict) else None
        if not vector:
            return ProbeResult(UNHEALTHY, None, f"embeddings for {model} returned no vector", "empty",
                               {"model": model, "kind": "embedding"})
        return ProbeResult(HEALTHY, None, f"embeddings for {model} answered ({len(vector)} dims)", "",
                           {"model": model, "kind": "embedding", "dims": len(vector)})

    return _timed(clock, body)


def probe_proxy_detail(session, base_url: str, key: str, timeout: float = 120.0, clock=time.perf_counter) -> ProbeResult:
    """LiteLLM's own /health (a real generation per model) and version: detail only, never the verdict."""

    def body() -> ProbeResult:
        data: dict = {"version": None, "healthy_count": None, "unhealthy_count": None}
        try:
            ready = _call(session, "GET", f"{base_url}/health/readiness", min(timeout, 5.0))
            if ready.status_code == 200:
                data["version"] = _json(ready, "/health/readiness").get("litellm_version")
        except _Failed:
            pass  # version is optional decoration
        response = _call(session, "GET", f"{base_url}/health", timeout, headers=auth_headers(key))
        if response.status_code != 200:
            return ProbeResult(UNHEALTHY, None, f"/health answered HTTP {response.status_code}", "http", data)
        health = _json(response, "/health")
        data["healthy_count"] = int(health.get("healthy_count") or 0)
        data["unhealthy_count"] = int(health.get("unhealthy_count") or 0)
        unhealthy = [
            {"model": e.get("model"), "api_base": e.get("api_base"), "error": str(e.get("error", ""))}
            for e in health.get("unhealthy_endpoints") or [] if isinstance(e, dict)
        ]
        if unhealthy:  # listed only when there are some (`make health-litellm` prints them)
            data["unhealthy_endpoints"] = unhealthy
        detail = f"LiteLLM /health: {data['healthy_count']} healthy, {data['unhealthy_count']} unhealthy deployments"
        status = HEALTHY if data["unhealthy_count"] == 0 and data["healthy_count"] > 0 else UNHEALTHY
        return ProbeResult(status, None, detail, "" if status == HEALTHY else "http", data)

    return _timed(clock, body)


# -- readiness: the probes behind `make start`, `make status` and `make health-*` --------------------


@dataclass(frozen=True)
class ReadyCheck:
    """One HTTP readiness probe: GET path on the service's address, with or without the key."""

    path: str
    with_key: bool = False
    needs_models: bool = False


def _version(session, base_url: str, timeout: float) -> ProbeResult:
    response = _call(session, "GET", f"{base_url}/api/version", timeout)
    if response.status_code != 200:
        return ProbeResult(UNHEALTHY, None, f"/api/version answered HTTP {response.status_code}", "http")
    version = _json(response, "/api/version").get("version")
    return ProbeResult(HEALTHY, None, f"version {version or '?'}", "", {"version": version})


def probe_version(session, base_url: str, timeout: float = 3.0, clock=time.perf_counter) -> ProbeResult:
    """An Ollama-API backend is ready when /api/version answers (its models may still be on their way)."""
    return _timed(clock, lambda: _version(session, base_url, timeout))


def probe_path(session, base_url: str, path: str, key: str = "", timeout: float = 3.0,
               clock=time.perf_counter) -> ProbeResult:
    """Healthy iff GET path answers 200 (liveness routes: /-/ready, /healthz, /health/liveliness, /metrics)."""

    def body() -> ProbeResult:
        response = _call(session, "GET", f"{base_url}{path}", timeout, headers=auth_headers(key))
        if response.status_code != 200:
            return ProbeResult(UNHEALTHY, None, f"{path} answered HTTP {response.status_code}", "http")
        return ProbeResult(HEALTHY, None, f"{path}: 200")

    return _timed(clock, body)


def probe_ready(session, base_url: str, checks, key: str, timeout: float = 5.0, clock=time.perf_counter) -> ProbeResult:
    """A service's readiness: its checks in order, the first failing one decides.

    /v1/models is judged by probe_proxy and /api/version by probe_version, the same rules the dashboard uses.
    """
    started = clock()
    result = ProbeResult(HEALTHY, None, "no readiness checks")
    for check in checks:
        check_key = key if check.with_key else ""
        if check.needs_models:
            result = probe_proxy(session, base_url, check_key, timeout, clock)
        elif check.path == "/api/version":
            result = probe_version(session, base_url, timeout, clock)
        elif check.path == REDIS_PING:
            result = probe_redis(base_url, timeout, clock)
        else:
            result = probe_path(session, base_url, check.path, check_key, timeout, clock)
        if not result.ok:
            return result
    return ProbeResult(result.status, round((clock() - started) * 1000.0, 3), result.detail, result.error, result.data)
