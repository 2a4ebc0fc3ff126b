"""bench/scaleout: throughput at saturation through the proxy with 1, 2 and 3 embedded backends.

Each point starts N embedded backends (real llama.cpp) and one LiteLLM proxy rendered from
litellm_config.yaml for those N backends, then runs a closed loop at 2 requests per backend
(each backend runs one generation at a time, so every backend always has one queued) with short
answers. CPU seconds per process are read from /proc so the numbers can be explained. Own ports.
"""
from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests
import yaml

from bench import _report
from bench._helpers import wait_http
from llmops import settings
from llmops.proxy import config as proxyconf
from llmops.proxy.key import auth_headers
from llmops.stack.services import embedded_threads
from llmops.traffic import TrafficConfig, run

ROOT = Path(__file__).resolve().parent.parent

BACKEND_PORT = 25434  # backends on 25434.., the proxy on 18310: clear of the stack and the tests
PROXY_PORT = 18310
STATE = ROOT / ".run-test" / "scaleout-bench"
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
LITELLM = str(Path(PYTHON).parent / "litellm")


def start_backends(count: int, threads: int | None, logs: Path) -> list[subprocess.Popen]:
    """N embedded backends on consecutive ports from BACKEND_PORT."""
    procs = []
    for index in range(count):
        argv = [PYTHON, str(ROOT / "scripts" / "embedded_backend.py"), "--host", "127.0.0.1",
                "--port", str(BACKEND_PORT + index), "--no-access-log"]
        if threads:
            argv += ["--threads", str(threads)]
        log = open(logs / f"backend-{index + 1}.log", "wb")  # noqa: SIM115 - owned by the process
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
    for index, proc in enumerate(procs):
        wait_http(f"http://127.0.0.1:{BACKEND_PORT + index}/api/version", 60, proc=proc)
    return procs


def start_proxy(urls: list[str], strategy: str, key: str, logs: Path) -> subprocess.Popen:
    """The LiteLLM proxy with litellm_config.yaml rendered for these backends and this routing strategy."""
    cfg = settings.load(env_file=logs / "absent.env", environ={
        "OLLAMA_HOSTS": ",".join(urls), "LITELLM_MASTER_KEY": key, "LITELLM_PORT": str(PROXY_PORT),
        "LLMOPS_STATE_DIR": str(STATE)})
    data = proxyconf.render(cfg)
    data["router_settings"]["routing_strategy"] = strategy
    config = logs / "litellm_config.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    env = dict(os.environ, LITELLM_MASTER_KEY=key, LITELLM_LOCAL_MODEL_COST_MAP="True",
               LITELLM_TELEMETRY="False", LITELLM_LOG="ERROR")
    log = open(logs / "litellm.log", "wb")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen([LITELLM, "--config", str(config), "--host", "127.0.0.1", "--port", str(PROXY_PORT)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    wait_http(f"http://127.0.0.1:{PROXY_PORT}/v1/models", 120, auth_headers(key), proc)
    return proc


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def cpu_seconds(procs: list[subprocess.Popen]) -> list[float]:
    """User+system CPU seconds of each process so far (children included: litellm has none that matter)."""
    out = []
    for proc in procs:
        try:
            times = psutil.Process(proc.pid).cpu_times()
            out.append(times.user + times.system)
        except psutil.Error:
            out.append(0.0)
    return out


def backend_requests(count: int) -> list[float]:
    """llm_backend_requests_total{endpoint="/api/chat"} of each backend (summed over statuses)."""
    totals = []
    for index in range(count):
        text = requests.get(f"http://127.0.0.1:{BACKEND_PORT + index}/metrics", timeout=5).text
        totals.append(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                          if line.startswith("llm_backend_requests_total") and '"/api/chat"' in line))
    return totals


def point(count: int, strategy: str, threads: int | None, duration: float, max_tokens: int, key: str) -> dict:
    """One measured point: start, warm up, saturate for `duration`, stop."""
    logs = Path(tempfile.mkdtemp(prefix=f"n{count}-", dir=STATE))
    backends = start_backends(count, threads, logs)
    procs = list(backends)
    try:
        proxy = start_proxy([f"http://127.0.0.1:{BACKEND_PORT + i}" for i in range(count)], strategy, key, logs)
        procs.append(proxy)
        concurrency = 2 * count
        run(TrafficConfig(url=f"http://127.0.0.1:{PROXY_PORT}", api_key=key, max_requests=3 * concurrency,
                          concurrency=concurrency, max_tokens=max_tokens, seed=1))  # warm-up, not counted
        before_cpu, before_req, started = cpu_seconds(procs), backend_requests(count), time.monotonic()
        result = run(TrafficConfig(url=f"http://127.0.0.1:{PROXY_PORT}", api_key=key, duration=duration,
                                   concurrency=concurrency, max_tokens=max_tokens, seed=2, timeout=60))
        wall = time.monotonic() - started
        cpu = [(a - b) / wall for a, b in zip(cpu_seconds(procs), before_cpu, strict=True)]
        served = [a - b for a, b in zip(backend_requests(count), before_req, strict=True)]
    finally:
        stop(procs)
    s = result.summary
    row = {
        "backends": count, "strategy": strategy, "threads": threads or "llama.cpp default",
        "concurrency": concurrency, "requests": s["requests"]["total"], "ok": s["requests"]["ok"],
        "error_ratio": round(s["error_ratio"], 4),
        "requests_per_s": round(s["throughput"]["requests_per_s"] or 0, 3),
        "output_tokens_per_s": round(s["throughput"]["output_tokens_per_s"] or 0, 1),
        "latency_p50_s": s["latency_s"]["p50"], "latency_p95_s": s["latency_s"]["p95"],
        "ttft_p50_s": s["ttft_s"]["p50"],
        "cpu_cores_per_backend": [round(c, 2) for c in cpu[:count]], "cpu_cores_proxy": round(cpu[count], 2),
        "served_per_backend": [int(x) for x in served],
    }
    print(row, flush=True)
    return row


def explanation(rows: dict[str, dict]) -> str:
    """The honest reading of the figures, with the numbers filled in."""
    cores = os.cpu_count() or 0
    one, two, three = rows["n1"], rows["n2"], rows["n3"]
    lines = [
        f"{cores} CPU cores. llama-cpp-python's default is cpu_count // 2 = {max(cores // 2, 1)} thread(s) per "
        "backend, and each backend runs one generation at a time, so one backend can use at most that many "
        "cores for decoding.",
        f"1 -> 2 backends: {one['requests_per_s']} -> {two['requests_per_s']} req/s "
        f"(x{two['requests_per_s'] / one['requests_per_s']:.2f}); 2 -> 3: -> {three['requests_per_s']} req/s "
        f"(x{three['requests_per_s'] / one['requests_per_s']:.2f} of one).",
        f"CPU in cores (backends / proxy): n1 {one['cpu_cores_per_backend']} / {one['cpu_cores_proxy']}, "
        f"n2 {two['cpu_cores_per_backend']} / {two['cpu_cores_proxy']}, "
        f"n3 {three['cpu_cores_per_backend']} / {three['cpu_cores_proxy']}: the backends, the proxy and the "
        "load generator share the same cores, so once the backends' threads cover the cores a further backend "
        "only splits the same CPU more ways (and adds context switches).",
    ]
    if "n1_threads2" in rows:
        t2 = rows["n1_threads2"]
        lines.append(
            f"One backend with --threads {cores}: {t2['requests_per_s']} req/s vs {one['requests_per_s']} with the "
            "default: more threads per generation is the other way to use the cores, but on a 135M model the "
            "per-token work is short, the threads meet at a barrier every layer, and a core taken by another "
            "process stalls them all (seen as multi-second spikes when other jobs share the cores).")
    lines.append("`--threads 1` per backend when N > 1 keeps N backends from starting N x (cores/2) threads: on "
                 "this machine the default is already 1, so it changes nothing here; on a larger machine it "
                 "avoids oversubscription. More hosts scale throughput when they are other machines (the "
                 "scale-out case): here all of them compete for the same two cores, and with other jobs on those "
                 "cores the points vary by several times between runs: compare points of one run only.")
    return " ".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per point")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--compare", default="least-busy",
                        help="other routing strategies to measure on 3 backends (comma-separated, or empty)")
    parser.add_argument("--no-threads-point", action="store_true", help="skip one backend with all cores' threads")
    args = parser.parse_args(argv)
    configured = yaml.safe_load(proxyconf.CONFIG.read_text())["router_settings"]["routing_strategy"]
    STATE.mkdir(parents=True, exist_ok=True)
    key = "sk-bench-" + secrets.token_hex(12)
    rows: dict[str, dict] = {}
    for count in (1, 2, 3):
        # The threads the stack gives each backend (services.embedded_threads): llama.cpp's default for one.
        rows[f"n{count}"] = point(count, configured, embedded_threads(count), args.duration, args.max_tokens, key)
    if not args.no_threads_point:
        rows["n1_threads2"] = point(1, configured, os.cpu_count() or 2, args.duration, args.max_tokens, key)
    for strategy in [s for s in args.compare.split(",") if s.strip()]:
        rows[f"n3_{strategy}"] = point(3, strategy.strip(), embedded_threads(3), args.duration, args.max_tokens, key)
    metrics = {}
    for name, row in rows.items():
        metrics[f"{name}_requests_per_s"] = _report.metric(row["requests_per_s"], "req/s", better="higher")
        metrics[f"{name}_output_tokens_per_s"] = _report.metric(row["output_tokens_per_s"], "tokens/s", better="higher")
        metrics[f"{name}_latency_p50_s"] = _report.metric(row["latency_p50_s"], "s")
        metrics[f"{name}_latency_p95_s"] = _report.metric(row["latency_p95_s"], "s")
    path = _report.write("scaleout", metrics, {
        "points": rows, "routing_strategy": configured, "duration_s": args.duration, "max_tokens": args.max_tokens,
        "load": "closed loop, concurrency 2 per backend, streaming chat completions through the proxy",
        "explanation": explanation(rows),
    })
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
