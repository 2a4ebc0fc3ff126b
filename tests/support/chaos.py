"""Fault injection against a running stack: signals to its supervised services and a foreign port holder.

Used by the reliability tests and `bench/reliability.py`. It only ever signals pids that the stack's own
supervisor reports, and only listens on the stack's own ports.
"""
from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import psutil
import requests

from llmops.errors import PortInUseError
from llmops.polling import poll_until
from llmops.stack import Stack, probe

# What the dashboard must say when a service fails: (component in /api/status, acceptable overall states).
EXPECTED = {
    "ollama": ("ollama", ("degraded", "down")),
    "litellm": ("proxy", ("down",)),
    "prometheus": ("prometheus", ("degraded",)),
    "alertmanager": ("alertmanager", ("degraded",)),  # alerts cannot be delivered; the rest goes on
    "dashboard": (None, ()),  # the dashboard cannot report on itself: `make status` does
}
FAULTS = ("sigkill", "sigstop", "port_taken")


@dataclass
class Outcome:
    """What one injected fault did, and whether the stack behaved."""

    service: str
    fault: str
    detected_s: float | None = None
    detected_as: str = ""
    recovered_s: float | None = None
    restarted_by_supervisor: bool = False
    dashboard_5xx: int = 0
    dashboard_polls: int = 0
    clear_error: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


class PortSquatter:
    """A foreign listener: accepts connections into its backlog and never answers."""

    def __init__(self, host: str, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)

    def __enter__(self) -> PortSquatter:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()


class FaultRunner:
    """Injects one fault at a time into a running stack and watches /api/status and the supervisor."""

    def __init__(self, stack: Stack, detect_within: float = 10.0, recover_within: float = 90.0,
                 out: Callable[[str], None] = lambda line: None):
        self.stack = stack
        self.detect_within = detect_within
        self.recover_within = recover_within
        self.out = out
        self.session = requests.Session()
        self.status_url = f"{stack.settings.dashboard_url}/api/status"

    # -- observation -------------------------------------------------------------------
    def service(self, name: str):
        return next(s for s in self.stack.services() if s.name == name)

    def pid(self, name: str) -> int | None:
        info = self.stack.supervisor.info(name)
        return info.pid if info and info.pid else None

    def dashboard_status(self, outcome: Outcome) -> dict | None:
        """One poll of /api/status; a 5xx is counted as a problem, a refused connection is not an answer."""
        outcome.dashboard_polls += 1
        try:
            response = self.session.get(self.status_url, timeout=3)
        except requests.RequestException:
            return None
        if response.status_code >= 500:
            outcome.dashboard_5xx += 1
            return None
        return response.json() if response.status_code == 200 else None

    def is_red(self, name: str, outcome: Outcome) -> str:
        """Describe how the failure shows ('' while it does not)."""
        component, overall = EXPECTED[name]
        if component is None:
            health = probe(self.service(name), self.stack.key, timeout=2.0)
            return "" if health.ok else f"make status: dashboard {health.detail}"
        doc = self.dashboard_status(outcome)
        if doc and doc["components"][component]["status"] != "healthy" and doc["overall"] in overall:
            return f"{component} {doc['components'][component]['status']}, overall {doc['overall']}: {doc['reason']}"
        return ""

    def is_healthy(self, name: str, outcome: Outcome) -> bool:
        if not probe(self.service(name), self.stack.key, timeout=3.0).ok:
            return False
        component, _ = EXPECTED[name]
        if component is None:
            return True
        doc = self.dashboard_status(outcome)
        return bool(doc) and doc["components"][component]["status"] == "healthy"

    def _wait(self, condition: Callable[[], object], timeout: float) -> tuple[object, float | None]:
        started = time.monotonic()
        value = poll_until(condition, timeout)
        return (value, time.monotonic() - started) if value else (None, None)

    # -- faults ------------------------------------------------------------------------
    def run(self, name: str, fault: str) -> Outcome:
        outcome = Outcome(name, fault)
        _, settled = self._wait(lambda: self.is_healthy(name, outcome), self.recover_within)
        if settled is None:
            outcome.problems.append("not healthy before the fault")
            return outcome
        getattr(self, f"_{fault}")(name, outcome)
        _, recovered = self._wait(lambda: self.is_healthy(name, outcome), self.recover_within)
        outcome.recovered_s = round(recovered, 2) if recovered is not None else None
        if recovered is None:
            outcome.problems.append(f"not healthy again within {self.recover_within:.0f} s")
        if outcome.dashboard_5xx:
            outcome.problems.append(f"dashboard answered 5xx {outcome.dashboard_5xx} times")
        self.out(f"{name:<11} {fault:<11} {'ok' if outcome.ok else 'FAILED: ' + '; '.join(outcome.problems)}"
                 f" (detected {outcome.detected_s} s, recovered {outcome.recovered_s} s)")
        return outcome

    def _detect(self, name: str, outcome: Outcome, started: float, allow_recovery_from: int | None = None) -> None:
        """Within detect_within: the failure shows, or (after a SIGKILL) the supervisor already brought it back."""
        def shown() -> str:
            how = self.is_red(name, outcome)
            if how:
                return how
            pid = self.pid(name)
            if allow_recovery_from and pid and pid != allow_recovery_from and self.is_healthy(name, outcome):
                return "restarted by the supervisor before two probes could fail"
            return ""

        how = poll_until(shown, max(0.0, started + self.detect_within - time.monotonic()), interval=0.1)
        if how:
            outcome.detected_s, outcome.detected_as = round(time.monotonic() - started, 2), how
            return
        outcome.problems.append(f"failure not shown within {self.detect_within:.0f} s")

    def _sigkill(self, name: str, outcome: Outcome) -> None:
        old = self.pid(name)
        os.kill(old, signal.SIGKILL)
        started = time.monotonic()
        self._detect(name, outcome, started, allow_recovery_from=old)
        new, _ = self._wait(lambda: (p := self.pid(name)) and p != old and p, self.recover_within)
        outcome.restarted_by_supervisor = bool(new)
        if not new:
            outcome.problems.append("the supervisor did not restart it")

    def _sigstop(self, name: str, outcome: Outcome) -> None:
        pid = self.pid(name)
        os.kill(pid, signal.SIGSTOP)
        try:
            self._detect(name, outcome, time.monotonic())
        finally:
            os.kill(pid, signal.SIGCONT)

    def _port_taken(self, name: str, outcome: Outcome) -> None:
        service = self.service(name)
        self.stack.stop(name)
        with PortSquatter(service.host, service.port):
            started = time.monotonic()
            try:
                self.stack.start(name)
                outcome.problems.append("start did not refuse a port held by a foreign process")
            except PortInUseError as exc:
                outcome.clear_error = str(exc)
                if f"port {service.port}" not in str(exc) or f"pid {os.getpid()}" not in str(exc):
                    outcome.problems.append(f"the error does not name the port and holder: {exc}")
            self._detect(name, outcome, started)
        self.stack.start(name)


def stack_processes(stack: Stack) -> list[psutil.Process]:
    """supervisord and every process under it."""
    pid = stack.supervisor.pid()
    if not pid or not psutil.pid_exists(pid):
        return []
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def leftovers(pids: list[int], ports: list[int]) -> list[str]:
    """Processes still alive among pids, and ports still listening, after a stop."""
    problems = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                problems.append(f"pid {pid} still running")
        except psutil.NoSuchProcess:
            pass
    for port in ports:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                problems.append(f"port {port} still listening")
    return problems


@dataclass
class LoadOutcome:
    """Traffic through the proxy while many clients poll the dashboard."""

    requests_sent: int
    requests_accounted: int
    requests_ok: int
    requests_failed: int
    failures_by_type: dict
    dashboard_polls: int
    dashboard_errors: int
    dashboard_p95_ms: float | None
    rss_before: dict
    rss_after: dict
    growth: dict
    problems: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def service_rss(stack: Stack) -> dict[str, int]:
    """RSS of each supervised service, children included."""
    rss = {}
    for name, info in stack.supervisor.all_info().items():
        try:
            root = psutil.Process(info.pid)
            rss[name] = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
        except (psutil.NoSuchProcess, ValueError):
            continue
    return rss


def run_load(stack: Stack, output, seconds: float = 60.0, concurrency: int = 16, pollers: int = 50,
             growth_bound_mb: float = 150.0, poll_interval: float = 1.0) -> LoadOutcome:
    """Generator traffic at `concurrency` for `seconds` while `pollers` threads poll /api/status."""
    import json
    import threading

    from llmops.traffic import TrafficConfig, run

    stop = threading.Event()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    url = f"{stack.settings.dashboard_url}/api/status"

    def poll() -> None:
        session = requests.Session()
        while not stop.is_set():
            started = time.perf_counter()
            try:
                ok = session.get(url, timeout=5).status_code == 200
            except requests.RequestException:
                ok = False
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)
                errors[0] += 0 if ok else 1
            stop.wait(poll_interval)

    before = service_rss(stack)
    threads = [threading.Thread(target=poll, daemon=True) for _ in range(pollers)]
    for thread in threads:
        thread.start()
    try:
        result = run(TrafficConfig(url=stack.settings.litellm_url, api_key=stack.key, duration=seconds,
                                   concurrency=concurrency, max_tokens=16, seed=1, output=output,
                                   timeout=60.0, max_error_ratio=1.0))
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    after = service_rss(stack)
    lines = [json.loads(line) for line in open(output)]
    summary = result.summary["requests"]
    sent = int(summary.get("sent", summary.get("total", len(lines))))
    failed = [ln for ln in lines if ln["status"] != "ok"]
    by_type: dict[str, int] = {}
    for line in failed:
        by_type[line["status"]] = by_type.get(line["status"], 0) + 1
    growth = {n: round((after.get(n, 0) - before.get(n, 0)) / 2**20, 1) for n in before}
    problems = []
    ids = sorted(ln["id"] for ln in lines)
    if ids != list(range(1, len(ids) + 1)) or len(ids) != sent:
        problems.append(f"{sent} requests sent but {len(ids)} lines with ids {ids[:3]}..{ids[-3:]}")
    if errors[0]:
        problems.append(f"{errors[0]} dashboard errors")
    for name, mb in growth.items():
        if mb > growth_bound_mb:
            problems.append(f"{name} grew {mb} MB (bound {growth_bound_mb} MB)")
    ordered = sorted(latencies)
    return LoadOutcome(
        requests_sent=sent, requests_accounted=len(lines), requests_ok=len(lines) - len(failed),
        requests_failed=len(failed), failures_by_type=by_type, dashboard_polls=len(latencies),
        dashboard_errors=errors[0], dashboard_p95_ms=round(ordered[int(len(ordered) * 0.95)], 2) if ordered else None,
        rss_before={n: round(v / 2**20, 1) for n, v in before.items()},
        rss_after={n: round(v / 2**20, 1) for n, v in after.items()}, growth=growth, problems=problems,
    )
