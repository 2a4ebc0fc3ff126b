"""The stack's lifecycle: start in order and wait for readiness, stop, and report status."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from .. import health
from ..errors import ConfigError, PortInUseError, ServiceError
from ..polling import poll_until
from ..proxy import config as proxyconf
from ..proxy.key import key_file, redact
from ..render import alertmanager_config as amconfig
from ..render import prometheus_config as promconfig
from ..settings import SECRETS, Settings
from . import envfile
from .ports import holder, port_open
from .services import ReadyCheck, Service, all_services
from .supervisor import Supervisor

Printer = Callable[[str], None]
# A service whose program is not installed: (what is skipped, the Debian package that brings it).
MISSING = {
    "prometheus": ("Prometheus", "prometheus"),
    "node_exporter": ("node_exporter", "prometheus-node-exporter"),
    "alertmanager": ("Alertmanager (alerts are not sent anywhere)", "prometheus-alertmanager"),
    "redis": ("Redis (each proxy worker keeps its own queue)", "redis-server"),
}


@dataclass
class Health:
    """The answer of a service's readiness probe."""

    ok: bool
    detail: str
    latency_ms: float | None = None


def probe(service: Service, key: str, timeout: float = 5.0) -> Health:
    """The service's readiness, decided by llmops.health (the dashboard's rules); the stack's wording."""
    result = health.probe_ready(requests, service.url, service.checks, key, timeout)
    if not result.ok:
        return Health(False, result.detail)
    models = result.data.get("models")
    detail = f"{len(models)} model(s): {', '.join(models)}" if models else result.detail
    return Health(True, detail, result.latency_ms)


@contextmanager
def state_lock(state_dir: Path):
    """One start/stop/restart at a time per stack: two racing starts could orphan a supervisord."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Stack:
    """One stack instance: its settings, its supervisor and its services."""

    def __init__(self, settings: Settings, out: Printer = print):
        self.settings = settings
        self.supervisor = Supervisor(settings)
        self.out = out

    # -- state -------------------------------------------------------------------------
    @property
    def mode_file(self) -> Path:
        return self.settings.state_dir / "ollama_mode"

    def ollama_mode(self) -> str:
        """external (something already answers), ollama (`ollama serve`) or embedded."""
        if self.settings.ollama_hosts:
            return "external"
        recorded = self.mode_file.read_text().strip() if self.mode_file.exists() else ""
        if recorded and self.supervisor.running() and self.supervisor.info("ollama"):
            return recorded
        port = self.settings.ollama_port
        if port_open(self.settings.bind_host, port):
            answering = Service("ollama", self.settings.bind_host, port, checks=[ReadyCheck("/api/version")])
            if probe(answering, "").ok:
                return "external"
        return "ollama" if shutil.which("ollama") else "embedded"

    def services(self, mode: str | None = None) -> list[Service]:
        return all_services(self.settings, mode or self.ollama_mode())

    @property
    def key(self) -> str:
        return self.settings.litellm_master_key

    @property
    def settings_file(self) -> Path:
        return self.settings.state_dir / "settings.json"

    def settings_snapshot(self) -> dict[str, str]:
        """The resolved settings the services run with; the key only as a short hash."""
        def shown(value: object) -> str:
            text = "" if value is None else ",".join(map(str, value)) if isinstance(value, list) else str(value)
            # A backend URL's user:password only as a hash.
            return re.sub(r"//([^/@\s]+)@", lambda m: "//sha256:" + hashlib.sha256(m[1].encode()).hexdigest()[:8] + "@",
                          text)

        snapshot = {name: shown(value) for name, value in self.settings.values.items()}
        for name in SECRETS:  # the key, the SMTP password, webhook URLs (their token is in the path): a hash only
            value = snapshot.pop(name, "")
            if name in self.settings.values:
                snapshot[name] = "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12] if value else ""
        return snapshot

    def changed_settings(self) -> list[str]:
        """Settings that differ from those the running supervisor (and so its services) started with.

        Services read their settings from the environment supervisord was started with and from .env when
        they start, so a value changed since then reaches none of them until the stack restarts."""
        try:
            started = json.loads(self.settings_file.read_text())
        except (OSError, ValueError):
            return []
        if not isinstance(started, dict):
            return []
        now = self.settings_snapshot()
        changed = []
        for name in sorted(now.keys() | started.keys()):
            if now.get(name, "") != started.get(name, ""):  # a setting newer than the snapshot counts as unset
                secret = name in SECRETS
                changed.append(name if secret else
                               f"{name} {started.get(name) or '(unset)'} -> {now.get(name) or '(unset)'}")
        return changed

    # -- start -------------------------------------------------------------------------
    def validate(self) -> None:
        """Check every config file before anything is started or stopped; errors name file and line."""
        proxyconf.validate(self.settings.litellm_config_path)
        promconfig.load(self.settings.prometheus_config_path)
        promconfig.check_rules(self.settings)
        if self.settings.alertmanager_enabled:
            amconfig.receivers(self.settings)  # a half-configured receiver names its .env line

    def prepare(self, services: list[Service], mode: str) -> None:
        """Write the files the services read; validate configs before anything starts."""
        self.validate()
        state = self.settings.state_dir
        state.mkdir(parents=True, exist_ok=True)
        os.chmod(state, 0o700)
        envfile.write_secret(key_file(state), self.key)
        skip = set()
        if any(s.name == "node_exporter" and s.kind == "missing" for s in services):
            skip.add("node")
        alertmanager = next((s for s in services if s.name == "alertmanager"), None)
        if alertmanager is None or alertmanager.kind != "supervised":
            skip.add("alertmanager")  # turned off or not installed: neither scraped nor sent alerts
        else:
            self.settings.alertmanager_data_dir.mkdir(parents=True, exist_ok=True)
            amconfig.check(amconfig.write(self.settings), self.settings)
        if mode == "ollama" or (mode == "external" and not self._backends_export_metrics()):
            skip.add("ollama")  # real Ollama has no /metrics; the dashboard exports its state instead
        rendered = promconfig.write(self.settings, skip=frozenset(skip))
        if any(s.name == "prometheus" and s.kind == "supervised" for s in services):
            promconfig.check(rendered)

    def start(self, only: str | None = None) -> None:
        """Start every service (or one) in order, waiting for each to be ready."""
        with state_lock(self.settings.state_dir):
            self._start(only)

    def _start(self, only: str | None = None) -> None:
        if not self.key:
            raise ConfigError(f"{self.settings.env_file}: LITELLM_MASTER_KEY is empty; run `make setup`")
        changed = self.changed_settings() if self.supervisor.running() else []
        kept_old = bool(changed and only)  # the running supervisor keeps its programs as they are
        if changed and not only:
            self.validate()  # a broken config stops nothing
            self.out(f"settings changed since the stack started ({'; '.join(changed)}): restarting it to apply them")
            self.supervisor.shutdown()
        elif changed:
            self.out(f"note: settings changed since the stack started ({'; '.join(changed)}); "
                     "`make restart` applies them to every service")
        # After any shutdown: which Ollama mode and services apply is decided on the machine as it is now.
        mode = self.ollama_mode()
        services = self.services(mode)
        names = [s.name for s in services]
        if only and only not in names and only != "ollama":
            raise ServiceError(f"unknown service {only!r}; expected one of {', '.join(names)}")
        self.prepare(services, mode)
        self.mode_file.write_text(mode + "\n")
        if self.supervisor.running():
            if not kept_old:  # reloading would stop programs whose definition changed, against the note
                self.supervisor.write_config(services)
                self.supervisor.reload()
        else:
            self.supervisor.write_config(services)
            if self.supervisor.clean_stale():
                self.out("cleaned up stale supervisor state from an earlier run")
            # Written first: it describes whichever supervisord this launch leaves running.
            envfile.write_secret(self.settings_file, json.dumps(self.settings_snapshot(), indent=1) + "\n")
            self.supervisor.launch(self._supervisor_env())
        for service in services:
            if only and not (service.name == only or (only == "ollama" and service.name.startswith("ollama"))):
                continue
            if kept_old and service.kind == "supervised" and self.supervisor.info(service.name) is None:
                self.out(f"  {service.name:<14} is not in the running stack (new settings); `make restart` adds it")
                continue
            self._start_one(service, mode)

    def _backends_export_metrics(self) -> bool:
        try:
            response = requests.get(self.settings.backend_urls[0] + "/metrics", timeout=2)
        except requests.RequestException:
            return False
        return response.status_code == 200 and "llm_backend_" in response.text

    def _supervisor_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LLMOPS_ENV_FILE"] = str(self.settings.env_file)
        for name in ("LLMOPS_STATE_DIR", "LLMOPS_LOG_DIR", "PROMETHEUS_DATA_DIR", "ALERTMANAGER_DATA_DIR"):
            env[name] = str(self.settings.values[name])
        return env

    def _start_one(self, service: Service, mode: str) -> None:
        if service.kind == "missing":
            what, package = MISSING.get(service.name, (service.name, service.name))
            self.out(f"  {service.name:<14} not installed: {what} is skipped "
                     f"(install it with: sudo apt-get install --no-install-recommends {package})")
            return
        if service.kind == "external":
            health = self.wait_ready(service, timeout=10.0)
            where = "external Ollama" if mode == "external" else "remote backend"
            state = "ready" if health.ok else f"NOT answering ({health.detail})"
            self.out(f"  {service.name:<14} {where} at {service.address}: {state}; not managed by this stack")
            return
        info = self.supervisor.info(service.name)
        if info and info.state in ("RUNNING", "STARTING", "BACKOFF"):
            health = probe(service, self.key)
            if health.ok:
                self.out(f"  {service.name:<14} already running (pid {info.pid}) at {service.address}")
                return
        elif port_open(service.host, service.port):
            who = holder(service.port, service.host)
            raise PortInUseError(
                f"port {service.port} ({service.name}) is held by {who.describe() if who else 'another process'}; "
                f"stop it or set {service.name.upper().split('-')[0]}_PORT in .env. Nothing was killed."
            )
        self.out(f"  {service.name:<14} starting on {service.address} ...")
        started = time.monotonic()
        self.supervisor.start(service.name)
        health = self.wait_ready(service, service.ready_timeout)
        if not health.ok:
            if service.optional:
                self.out(f"  {service.name:<14} not ready ({health.detail}); optional, going on")
                return
            self.out(self.log_tail(service.name, 30))
            raise ServiceError(f"{service.name} was not ready within {service.ready_timeout:.0f} s: {health.detail}")
        self.out(f"  {service.name:<14} ready in {time.monotonic() - started:.1f} s ({health.detail})")

    def wait_ready(self, service: Service, timeout: float) -> Health:
        """Poll the readiness probe until it passes, the program gives up, or the timeout runs out."""
        deadline = time.monotonic() + timeout
        last = [Health(False, "not probed")]

        def settled() -> Health | None:
            last[0] = probe(service, self.key, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            if last[0].ok:
                return last[0]
            if service.kind == "supervised":
                info = self.supervisor.info(service.name)
                if info and info.state == "FATAL":
                    return Health(False, f"supervisor gave up: {info.description}")
            return None

        return poll_until(settled, timeout) or last[0]

    # -- stop --------------------------------------------------------------------------
    def restart(self, only: str | None = None) -> None:
        """Validate first, so a broken config leaves the running services untouched; then stop and start."""
        self.validate()
        with state_lock(self.settings.state_dir):
            self._stop(only)
            self._start(only)

    def stop(self, only: str | None = None) -> None:
        """Stop one service, or every service and the supervisor. Stopped already is fine."""
        with state_lock(self.settings.state_dir):
            self._stop(only)

    def _stop(self, only: str | None = None) -> None:
        if not self.supervisor.running():
            hung = self.supervisor.unresponsive_pid()
            if hung:
                self.out(f"supervisor (pid {hung}) does not answer on its socket; stopping it and its programs")
                self.supervisor.terminate(hung)
                return
            stale = self.supervisor.clean_stale()
            self.out("stack is not running" + (" (cleaned up stale state)" if stale else ""))
            return
        if only:
            names = [n for n in self.supervisor.all_info() if n == only or (only == "ollama" and n.startswith("ollama"))]
            if not names:
                self.out(f"  {only:<14} is not managed by this stack (external or unknown); nothing to stop")
            for name in names:
                self.supervisor.stop(name)
                self.out(f"  {name:<14} stopped")
            return
        self.supervisor.shutdown()
        self.out("stack stopped")

    # -- status ------------------------------------------------------------------------
    def status(self) -> list[dict]:
        """One row per service: name, state, pid, address, uptime, health and latency."""
        mode = self.ollama_mode()
        infos = self.supervisor.all_info() if self.supervisor.running() else {}
        rows = []
        for service in self.services(mode):
            info = infos.get(service.name)
            if service.kind == "external":
                state, pid, uptime = ("external" if mode == "external" else "remote"), None, None
            elif service.kind == "missing":
                state, pid, uptime = "not installed", None, None
            elif info is None:
                state, pid, uptime = "STOPPED", None, None
            else:
                state, pid = info.state, info.pid or None
                uptime = time.time() - info.start if info.state in ("RUNNING", "STARTING") and info.start else None
            health = probe(service, self.key, timeout=3.0) if state not in ("not installed",) else Health(False, "-")
            if service.name.startswith("ollama") and service.kind == "supervised":
                state_label = f"{state} ({mode})"
            else:
                state_label = state
            rows.append({
                "name": service.name, "state": state_label, "pid": pid, "address": service.address,
                "uptime_s": uptime, "healthy": health.ok, "health": health.detail,
                "latency_ms": health.latency_ms, "optional": service.optional,
            })
        return rows

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.settings.log_dir / f"{name}.log"
        if not path.exists():
            return f"  (no log at {path})"
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        return f"  last {len(tail)} lines of {path}:\n" + "\n".join("    " + redact(line, self.key) for line in tail)

    def log_path(self, name: str) -> Path:
        return self.settings.log_dir / f"{name}.log"


