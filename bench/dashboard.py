"""Benchmark: /api/status latency under 50 concurrent clients against the dashboard served by waitress.

Run: .venv/bin/python -m bench.dashboard [--clients 50] [--seconds 30] [--rounds 3]
The dashboard runs in its own process (as under the supervisor) with static probe results, so the
figure is the serving path alone. Its floor, in the same run: a bare WSGI app under waitress (same
threads, its own process) answering a trivial JSON, loaded by the same client; the two take turns in
rounds, and the goals are the dashboard's p95 over the floor's, closed loop and paced.
`time_to_red()` measures kill-backend -> red card on a real stack.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _static_checks():
    """Checks that answer at once with a realistic healthy stack (one backend, one loaded model)."""
    from llmops.dashboard.monitor import Check
    from llmops.health import ProbeResult

    model = {"name": "smollm2:135m", "size": 98362432, "modified_at": "2025-01-01T00:00:00Z"}
    loaded = {"name": "smollm2:135m", "size": 210000000, "size_vram": 0, "expires_at": "2030-01-01T00:00:00Z"}
    results = {
        "proxy": ProbeResult("healthy", 4.2, "lists 1 model", "", {"models": ["smollm2:135m"]}),
        "backend:http://127.0.0.1:11434": ProbeResult(
            "healthy", 1.1, "1 model present, 1 loaded", "", {"version": "0.5.7", "present": [model], "loaded": [loaded]}
        ),
        "prometheus": ProbeResult("healthy", 0.9, "ready", "", {"version": "2.42.0"}),
        "traffic": ProbeResult("healthy", 3.0, "99% of 120 real requests succeeded in the last 5m", "",
                               {"window": "5m", "requests": 120, "failed": 1, "rate_limited": 0, "success_ratio": 0.99}),
        "canary": ProbeResult("healthy", 48.0, "chat completion for smollm2:135m answered", "", {"model": "smollm2:135m"}),
    }
    component = {"backend:http://127.0.0.1:11434": "ollama"}
    return [Check(name, lambda r=r: r, 5.0, component.get(name, name)) for name, r in results.items()]


def serve(threads: int = 8) -> None:
    """Child process: serve the dashboard with static checks on a free port and print the port."""
    import logging

    import waitress

    from llmops.dashboard import create_app

    # Closed-loop load keeps waitress's queue non-empty by design; its per-request warning is noise here.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    from llmops import settings as settings_mod

    settings = settings_mod.load(env_file=Path("/nonexistent/.env"), environ={"LITELLM_MASTER_KEY": "sk-bench"})
    app = create_app({"SETTINGS": settings, "CHECKS": _static_checks(), "START_MONITOR": True})
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads)
    print(server.effective_port, flush=True)
    server.run()


FLOOR_BODY = b'{"overall": "healthy"}'


def floor_app(environ, start_response):
    """The floor: the least a WSGI app can do for a JSON answer."""
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(FLOOR_BODY)))])
    return [FLOOR_BODY]


def serve_floor(threads: int = 8) -> None:
    """Child process: serve floor_app under waitress with the dashboard's threads on a free port; print the port."""
    import logging

    import waitress

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    server = waitress.create_server(floor_app, host="127.0.0.1", port=0, threads=threads)
    print(server.effective_port, flush=True)
    server.run()


async def _load(url: str, clients: int, seconds: float, pace: float | None) -> tuple[list[float], int]:
    """Closed loop (pace None: each client sends again at once) or paced (one request per pace seconds)."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)

    async def client(session, index: int) -> None:
        nonlocal errors
        if pace:
            await asyncio.sleep(pace * index / clients)  # spread the clients over one period
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            elapsed = time.perf_counter() - started
            latencies.append(elapsed)
            if pace:
                await asyncio.sleep(max(0.0, pace - elapsed))

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session, i) for i in range(clients)))
    return latencies, errors


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_to_red(status_url: str, kill: Callable[[], object], component: str = "ollama",
                timeout: float = 60.0, poll: float = 0.05, session=None) -> dict:
    """Seconds from kill() returning until /api/status shows the component not healthy (kill time reported too)."""
    import requests

    session = session or requests.Session()
    if session.get(status_url, timeout=5).json()["components"][component]["status"] != "healthy":
        raise RuntimeError(f"{component} is not healthy before the kill; nothing to measure")
    started = time.monotonic()
    kill()
    killed = time.monotonic()
    while time.monotonic() - killed < timeout:
        if session.get(status_url, timeout=5).json()["components"][component]["status"] != "healthy":
            return {"seconds_to_red": round(time.monotonic() - killed, 3), "kill_seconds": round(killed - started, 3)}
        time.sleep(poll)
    raise TimeoutError(f"{component} still healthy {timeout:g} s after the kill")


def kill_to_red(runs: int = 3) -> list[float]:
    """Seconds from stopping the real embedded backend to a non-healthy card in the real dashboard.

    A real stack on bench ports with the default probe interval (5 s); the backend is stopped through
    the supervisor, then started again and awaited before the next run.
    """
    import os

    from llmops import settings
    from llmops.stack import Stack, envfile

    env = {"LLMOPS_STATE_DIR": ".run-bench/dash/state", "LLMOPS_LOG_DIR": ".run-bench/dash/logs",
           "PROMETHEUS_DATA_DIR": ".run-bench/dash/prometheus-data",
           "ALERTMANAGER_DATA_DIR": ".run-bench/dash/alertmanager-data", "ALERT_HISTORY_PATH": ".run-bench/dash/alerts.db",
           "ALERTMANAGER_PORT": "19597",
           "LLMOPS_ENV_FILE": str(ROOT / ".run-bench/dash/env"), "OLLAMA_PORT": "26434", "LITELLM_PORT": "18500",
           "PROMETHEUS_PORT": "19590", "DASHBOARD_PORT": "13501", "NODE_EXPORTER_PORT": "19600",
           "PROBE_INTERVAL": "5", "CANARY_INTERVAL": "0"}
    os.environ.update(env)
    (ROOT / ".run-bench/dash").mkdir(parents=True, exist_ok=True)
    envfile.ensure(Path(env["LLMOPS_ENV_FILE"]))
    stack = Stack(settings.load(env_file=Path(env["LLMOPS_ENV_FILE"])), out=lambda line: None)
    stack.start()
    url = f"{stack.settings.dashboard_url}/api/status"
    seconds = []
    try:
        import requests

        for _ in range(runs):
            deadline = time.monotonic() + 60
            while requests.get(url, timeout=5).json()["components"]["ollama"]["status"] != "healthy":
                if time.monotonic() > deadline:
                    raise RuntimeError("backend not healthy in the dashboard")
                time.sleep(0.2)
            seconds.append(time_to_red(url, lambda: stack.stop("ollama"))["seconds_to_red"])
            stack.start("ollama")
    finally:
        stack.stop()
    return seconds


def _child(flag: str, threads: int) -> tuple[subprocess.Popen, str]:
    """Start `python -m bench.dashboard FLAG` and return it and its /api/status URL once it listens."""
    child = subprocess.Popen([sys.executable, "-m", "bench.dashboard", flag, "--threads", str(threads)],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = child.stdout.readline()
    if not line.strip().isdigit():
        child.kill()
        raise RuntimeError(f"bench.dashboard {flag} did not start: {line!r}")
    return child, f"http://127.0.0.1:{int(line)}/api/status"


def _rounds(urls: dict[str, str], rounds: int, clients: int, seconds: float, pace: float | None) -> dict:
    """Each side in turn, `rounds` times, seconds/rounds each: {side: (latencies, errors, seconds loaded)}."""
    out = {side: ([], 0, 0.0) for side in urls}
    for _ in range(rounds):
        for side, url in urls.items():
            latencies, errors = asyncio.run(_load(url, clients, seconds / rounds, pace))
            got, failed, loaded = out[side]
            out[side] = (got + latencies, failed + errors, loaded + seconds / rounds)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0, help="closed loop, per side")
    parser.add_argument("--paced-seconds", type=float, default=10.0, help="then clients polling once a second, per side")
    parser.add_argument("--rounds", type=int, default=3, help="turns of dashboard and floor in each mode")
    parser.add_argument("--threads", type=int, default=4, help="waitress threads (the dashboard default is 4)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.threads)
        return 0
    if args.serve_floor:
        serve_floor(args.threads)
        return 0

    from bench import _report

    children: list[subprocess.Popen] = []
    try:
        dashboard, dashboard_url = _child("--serve", args.threads)
        children.append(dashboard)
        floor, floor_url = _child("--serve-floor", args.threads)
        children.append(floor)
        urls = {"dashboard": dashboard_url, "floor": floor_url}
        for url in urls.values():
            asyncio.run(_load(url, 5, 1.0, None))  # warm-up: imports, first connections
        closed = _rounds(urls, args.rounds, args.clients, args.seconds, None)
        paced = _rounds(urls, args.rounds, args.clients, args.paced_seconds, 1.0)
    finally:
        for child in children:
            child.terminate()
            child.wait(10)
    ms = {side: [x * 1000 for x in closed[side][0]] for side in urls}
    paced_ms = {side: [x * 1000 for x in paced[side][0]] for side in urls}
    p95 = {side: _percentile(ms[side], 0.95) for side in urls}
    paced_p95 = {side: _percentile(paced_ms[side], 0.95) for side in urls}
    red = kill_to_red()
    m = _report.metric
    floor_text = "a bare waitress app answering a trivial JSON, same client, same run"
    metrics = {
        "status_p95_ratio": m(round(p95["dashboard"] / p95["floor"], 3), "ratio", goal=1.5,
                              baseline=f"{floor_text}, closed loop"),
        "status_paced_p95_ratio": m(round(paced_p95["dashboard"] / paced_p95["floor"], 3), "ratio", goal=2.0,
                                    baseline=f"{floor_text}, paced"),
        "status_p50_ms": m(round(statistics.median(ms["dashboard"]), 2), "ms"),
        "status_p95_ms": m(round(p95["dashboard"], 2), "ms", baseline="judged by status_p95_ratio"),
        "status_p99_ms": m(round(_percentile(ms["dashboard"], 0.99), 2), "ms"),
        "floor_p95_ms": m(round(p95["floor"], 2), "ms"),
        "status_throughput": m(round(len(ms["dashboard"]) / closed["dashboard"][2], 1), "req/s", better="higher"),
        "floor_throughput": m(round(len(ms["floor"]) / closed["floor"][2], 1), "req/s", better="higher"),
        "status_paced_p95_ms": m(round(paced_p95["dashboard"], 2), "ms", baseline="judged by status_paced_p95_ratio"),
        "floor_paced_p95_ms": m(round(paced_p95["floor"], 2), "ms"),
        "status_errors": m(closed["dashboard"][1] + paced["dashboard"][1], "requests", goal=0),
        "kill_backend_to_red_s": m(max(red), "s", goal=10.0, baseline="worst of 3, default 5 s probe interval"),
    }
    extra = {
        "clients": args.clients,
        "seconds": args.seconds,
        "paced_seconds": args.paced_seconds,
        "rounds": args.rounds,
        "requests": len(ms["dashboard"]),
        "floor_requests": len(ms["floor"]),
        "floor_errors": closed["floor"][1] + paced["floor"][1],
        "mode": "closed loop: each client sends its next request as soon as the last answers; "
                "paced: each client polls once a second (like an open page); dashboard and floor take turns",
        "server": f"waitress, {args.threads} threads, separate process (each side); client: aiohttp on the same machine",
        "paced_requests": len(paced_ms["dashboard"]),
        "kill_backend_to_red_s": red,
    }
    _report.report("dashboard", metrics, extra, width=24)
    return 0


if __name__ == "__main__":
    sys.exit(main())
