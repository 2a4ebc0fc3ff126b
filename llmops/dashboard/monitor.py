"""Background probing with hysteresis; readers get the latest /api/status snapshot and never wait on a probe."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from ..health import HEALTHY, OFFLINE, UNHEALTHY, ProbeResult, host_port, pending
from . import verdict

COMPONENTS = ("proxy", "ollama", "prometheus", "traffic", "canary", "alertmanager", "redis")
EMBEDDING_CANARY = "canary:embedding"  # the embedding model's canary; shown under the canary component
# Failures that leave no doubt (nothing listens, or nothing answers within the timeout) turn a component
# red at once; the others (an HTTP error, a bad body) need two in a row, against flapping.
SILENT = ("timeout", "offline")


def iso(ts: float | None) -> str | None:
    """Unix seconds -> ISO 8601 UTC (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass
class Check:
    """One probe on its own schedule; fail_after=None turns hysteresis off (windowed signals)."""

    name: str
    fn: Callable[[], ProbeResult]
    interval: float
    component: str
    fail_after: int | None = 2
    # A probe still waiting after this many seconds turns the component red at once (a SIGSTOPped
    # process accepts connections but never answers: waiting out a 10 s timeout twice is too slow).
    overdue_after: float | None = None
    model: str | None = None  # the model a canary probes, shown before its first answer


class Hysteresis:
    """Debounced state of one check: fail_after failures in a row to go red, one success to go green."""

    def __init__(self, fail_after: int | None = 2):
        self.fail_after = fail_after or 1
        self.effective: ProbeResult = pending()
        self.last: ProbeResult = self.effective
        self.failures_in_row = 0
        self.failures_total = 0
        self.since: float | None = None
        self.checked_at: float | None = None

    def observe_silence(self, result: ProbeResult, now: float) -> ProbeResult:
        """A probe got no answer at all (timed out, or overdue): red at once, no second chance."""
        self.failures_in_row = max(self.failures_in_row, self.fail_after - 1)
        return self.observe(result, now)

    def observe(self, result: ProbeResult, now: float) -> ProbeResult:
        """Feed one raw result; return the effective (debounced) one."""
        self.last, self.checked_at = result, now
        was_ok, was_pending = self.effective.ok, self.effective.error == "pending"
        if result.ok:
            self.failures_in_row = 0
            new = result
        else:
            self.failures_total += 1
            self.failures_in_row += 1
            if was_ok and self.failures_in_row < self.fail_after:
                # Hold green: one failed probe is not yet an outage, but say so.
                held = self.effective
                note = f"{held.detail} (last probe failed: {result.detail})"
                new = ProbeResult(held.status, result.latency_ms, note, "", held.data)
            else:
                new = result
        if was_pending or new.ok != was_ok:
            self.since = now
        self.effective = new
        return new


def _row(state: Hysteresis) -> dict:
    result = state.effective
    return {
        "status": result.status,
        "latency_ms": result.latency_ms,
        "detail": result.detail,
        "error": result.error,
        "since": iso(state.since),
        "checked_at": iso(state.checked_at),
    }


def _backend_row(url: str, state: Hysteresis) -> dict:
    row = _row(state)
    data = state.effective.data
    row.update(
        backend=host_port(url),
        url=url,
        version=data.get("version"),
        models=[m["name"] for m in data.get("present", [])],
        present=data.get("present", []),
        loaded=data.get("loaded", []),
    )
    return row


def _ollama(backends: list[dict]) -> dict:
    up = [b for b in backends if b["status"] == HEALTHY]
    down = [b for b in backends if b["status"] != HEALTHY]
    if len(backends) == 1:
        row = {k: v for k, v in backends[0].items() if k not in ("backend", "url", "present", "loaded")}
    else:
        status = HEALTHY if not down else (OFFLINE if all(b["status"] == OFFLINE for b in backends) else UNHEALTHY)
        if down:
            names = ", ".join(f"{b['backend']} ({b['detail']})" for b in down)
            detail = f"{len(down)} of {len(backends)} backends down: {names}"
        else:
            detail = f"all {len(backends)} backends up"
        latencies = [b["latency_ms"] for b in backends if b["latency_ms"] is not None]
        sinces = [b["since"] for b in backends if b["since"]]
        row = {
            "status": status,
            "latency_ms": max(latencies) if latencies else None,
            "detail": detail,
            "error": "" if not down else ("pending" if all(b["error"] == "pending" for b in down) else "partial"),
            "since": max(sinces) if sinces else None,
            "checked_at": max((b["checked_at"] for b in backends if b["checked_at"]), default=None),
            "version": next((b["version"] for b in up if b["version"]), None),
        }
    row["models"] = sorted({m for b in backends for m in b["models"]})
    row["backends"] = backends
    return row


class Monitor:
    """Runs each Check on its own thread and keeps the latest /api/status snapshot ready to serve."""

    def __init__(self, checks: list[Check], clock: Callable[[], float] = time.time, canary_enabled: bool = True,
                 alertmanager_enabled: bool | None = None, redis_note: str = "not used"):
        self.checks = {c.name: c for c in checks}
        self.clock = clock
        self.canary_enabled = canary_enabled
        # Judged only when it runs: by default, when there is an alertmanager check.
        self.alertmanager_enabled = "alertmanager" in self.checks if alertmanager_enabled is None else alertmanager_enabled
        # Redis is judged when the stack uses it (there is a redis check); the note says what for, or why not.
        self.redis_note = redis_note
        self.states = {c.name: Hysteresis(c.fail_after) for c in checks}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.updates = 0
        self._status: dict = {}
        self._status_json = b""
        self._inflight: dict[str, float] = {}
        self._overdue: set[str] = set()
        with self._lock:
            self._rebuild()

    # -- probing -------------------------------------------------------------
    def run_check(self, name: str) -> ProbeResult:
        """Run one check now (blocking) and publish the new snapshot."""
        check = self.checks[name]
        with self._lock:
            self._inflight[name] = time.monotonic()
        try:
            result = check.fn()
        except Exception as exc:  # a probe bug must show as a status, not kill the thread
            result = ProbeResult(UNHEALTHY, None, f"probe error: {type(exc).__name__}: {exc}", "http")
        with self._changed:
            self._inflight.pop(name, None)
            self._overdue.discard(name)
            state = self.states[name]
            if result.error in SILENT and check.fail_after:
                state.observe_silence(result, self.clock())
            else:
                state.observe(result, self.clock())
            self._rebuild()
            self.updates += 1
            self._changed.notify_all()
        return result

    def run_once(self) -> dict:
        """Run every check once, in order (tests and one-shot use); return the status."""
        for name in self.checks:
            self.run_check(name)
        return self.status()

    def _loop(self, check: Check) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.run_check(check.name)
            self._stop.wait(max(0.05, check.interval - (time.monotonic() - started)))

    def check_overdue(self) -> list[str]:
        """Turn red every check whose probe has waited past its overdue_after; return their names."""
        flagged = []
        now = time.monotonic()
        with self._changed:
            for name, started in list(self._inflight.items()):
                check = self.checks[name]
                waited = now - started
                if check.overdue_after is None or waited < check.overdue_after or name in self._overdue:
                    continue
                self._overdue.add(name)
                result = ProbeResult(UNHEALTHY, None, f"no answer for {waited:.0f} s (probe still waiting)", "timeout")
                self.states[name].observe_silence(result, self.clock())
                flagged.append(name)
            if flagged:
                self._rebuild()
                self.updates += 1
                self._changed.notify_all()
        return flagged

    def _watchdog(self) -> None:
        while not self._stop.wait(0.25):
            self.check_overdue()

    def start(self) -> None:
        """Start one daemon thread per check, and the watchdog for overdue probes."""
        if self._threads:
            return
        self._stop.clear()
        for check in self.checks.values():
            thread = threading.Thread(target=self._loop, args=(check,), name=f"probe-{check.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if any(c.overdue_after for c in self.checks.values()):
            thread = threading.Thread(target=self._watchdog, name="probe-watchdog", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the threads to stop and wait for them (a probe in flight finishes first)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float) -> bool:
        """Block until predicate(status) holds or timeout passes; True when it held."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self._status):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    # -- reading -------------------------------------------------------------
    def status(self) -> dict:
        """The latest /api/status document (do not mutate)."""
        return self._status

    def status_json(self) -> bytes:
        """The latest /api/status document, serialised once per update so serving it is cheap."""
        return self._status_json

    def failure_counts(self) -> dict[str, int]:
        """Raw (pre-hysteresis) probe failures per component since start."""
        counts = {name: 0 for name in COMPONENTS}
        for check in self.checks.values():
            if check.component in counts:
                counts[check.component] += self.states[check.name].failures_total
        return counts

    def raw_latency(self) -> dict[str, float]:
        """Latest raw probe latency per component, in seconds."""
        latency: dict[str, float] = {}
        for check in self.checks.values():
            value = self.states[check.name].last.latency_ms
            if value is not None and check.component in COMPONENTS:
                latency[check.component] = max(latency.get(check.component, 0.0), value / 1000.0)
        return latency

    def _rebuild(self) -> None:
        components: dict[str, dict] = {}
        backends = [
            _backend_row(check.name.split(":", 1)[1], self.states[check.name])
            for check in self.checks.values()
            if check.name.startswith("backend:")
        ]
        components["proxy"] = self._proxy()
        components["ollama"] = _ollama(backends) if backends else {**_row(Hysteresis()), "models": [], "backends": []}
        for name in ("prometheus", "traffic"):
            state = self.states.get(name) or Hysteresis()
            components[name] = _row(state)
            components[name].update(state.effective.data)
        components["canary"] = self._canary()
        components["alertmanager"] = self._alertmanager()
        components["redis"] = self._redis()
        overall, reason = verdict.decide(components)
        checked = [s.checked_at for s in self.states.values() if s.checked_at is not None]
        self._status = {
            "overall": overall,
            "reason": reason,
            "checked_at": iso(max(checked) if checked else self.clock()),
            "components": components,
        }
        self._status_json = json.dumps(self._status, separators=(",", ":")).encode()

    def _proxy(self) -> dict:
        state = self.states.get("proxy") or Hysteresis()
        row = _row(state)
        row["models"] = list(state.effective.data.get("models", []))
        detail_state = self.states.get("proxy_detail")
        extra = detail_state.effective if detail_state else None
        row["version"] = extra.data.get("version") if extra else None
        row["health_check"] = (
            None
            if not extra or extra.error == "pending"
            else {"status": extra.status, "detail": extra.detail, "checked_at": iso(detail_state.checked_at)}
        )
        return row

    def _optional(self, name: str, enabled: bool, off: str) -> dict:
        """The row of a component that can be turned off; while off it is offline with enabled False, so that
        neither the verdict nor the exporter judges it."""
        state = self.states.get(name)
        if not enabled or state is None:
            return {"status": OFFLINE, "latency_ms": None, "detail": f"off ({off})", "error": "",
                    "since": None, "checked_at": None, "enabled": False}
        return {**_row(state), "enabled": True}

    def _alertmanager(self) -> dict:
        row = self._optional("alertmanager", self.alertmanager_enabled, "ALERTMANAGER_ENABLED=false")
        if row["enabled"]:
            row.update(self.states["alertmanager"].effective.data)
        return row

    def _redis(self) -> dict:
        if "redis" not in self.checks:  # not needed: neither down nor judged, and it says why
            return {"status": OFFLINE, "latency_ms": None, "detail": self.redis_note, "error": "", "since": None,
                    "checked_at": None, "enabled": False, "needed": False}
        row = {**_row(self.states["redis"]), "enabled": True, "needed": True, "role": self.redis_note}
        row.update(self.states["redis"].effective.data)
        return row

    def _canary(self) -> dict:
        row = self._optional("canary", self.canary_enabled, "CANARY_INTERVAL=0")
        if not row["enabled"]:
            return row
        state = self.states["canary"]
        row["model"] = state.effective.data.get("model")
        embedding = self.states.get(EMBEDDING_CANARY)
        if embedding is None:
            return row
        # One canary per model kind; the component shows the worst, each kind its own row.
        other = _row(embedding)
        other["model"] = embedding.effective.data.get("model") or self.checks[EMBEDDING_CANARY].model
        kinds = {"chat": dict(row), "embedding": other}
        worst = next((k for k in kinds.values() if k["status"] != HEALTHY and k["error"] != "pending"), row)
        return {**worst, "enabled": True, "model": row["model"], "kinds": kinds}


def embedding_model(settings) -> str | None:
    """The first embedding model the proxy config routes (the embedding canary's model), or None."""
    from ..errors import ConfigError
    from ..proxy import config as proxyconf

    try:
        routed = proxyconf.routed_models(proxyconf.validate(settings.litellm_config_path))
    except ConfigError:
        return None  # the proxy will not start either; its own check says why
    return next((name for name, mode in routed.items() if mode == "embedding"), None)


def redis_use(settings) -> tuple[str, str]:
    """(the Redis the proxy's queue shares its state through, or "" when none; why, in words)."""
    from ..proxy import config as proxyconf

    if not settings.queue_enabled:
        return "", "not used: QUEUE_ENABLED=false, so the proxy has no queue to share"
    url = proxyconf.queue_redis_url(settings)
    if not url:
        return "", (f"not used: one proxy worker (LITELLM_WORKERS={settings.litellm_workers}) and no REDIS_URL, "
                    "so the queue lives in the proxy's process")
    parts = urlsplit(url)
    where = f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"  # never the URL itself: it may hold a password
    if settings.redis_url:
        return url, f"REDIS_URL at {where}: the proxies share the queue through it"
    return url, f"the stack's own at {where}: {settings.litellm_workers} proxy workers share the queue through it"


def default_checks(settings, session, prom, probe_timeout: float = 3.0, detail_interval: float = 300.0) -> list[Check]:
    """The stack's checks wired from settings: proxy, each backend, Prometheus, traffic, canary, LiteLLM detail."""
    from .. import health as probes

    key = settings.litellm_master_key
    proxy_url = settings.litellm_url
    interval = settings.probe_interval
    last_proxy: dict = {}

    def proxy() -> ProbeResult:
        result = probes.probe_proxy(session, proxy_url, key)
        if result.ok:
            last_proxy["models"] = result.data.get("models", [])
        return result

    def canary_model() -> str:
        models = last_proxy.get("models") or []
        tag = settings.model_tag
        return tag if tag in models or not models else models[0]

    checks = [Check("proxy", proxy, interval, "proxy", overdue_after=min(5.0, probes.PROXY_TIMEOUT))]
    for url in settings.backend_urls:
        checks.append(
            Check(f"backend:{url}", lambda url=url: probes.probe_backend(session, url, probe_timeout), interval, "ollama")
        )
    checks.append(Check("prometheus", lambda: probes.probe_prometheus(session, settings.prometheus_url, probe_timeout),
                        interval, "prometheus"))
    checks.append(Check("traffic", lambda: probes.probe_traffic(prom), interval, "traffic", fail_after=None))
    if settings.alertmanager_enabled:
        checks.append(Check("alertmanager",
                            lambda: probes.probe_alertmanager(session, settings.alertmanager_url, probe_timeout),
                            interval, "alertmanager"))
    redis_url, _ = redis_use(settings)
    if redis_url:
        checks.append(Check("redis", lambda: probes.probe_redis(redis_url, probe_timeout), interval, "redis"))
    if settings.canary_interval > 0:
        checks.append(Check("canary", lambda: probes.probe_canary(session, proxy_url, key, canary_model()),
                            settings.canary_interval, "canary"))
        embedder = embedding_model(settings)
        if embedder:
            checks.append(Check(EMBEDDING_CANARY,
                                lambda: probes.probe_embedding_canary(session, proxy_url, key, embedder),
                                settings.canary_interval, "canary", model=embedder))
    checks.append(Check("proxy_detail", lambda: probes.probe_proxy_detail(session, proxy_url, key),
                        detail_interval, "proxy_detail", fail_after=None))
    return checks
