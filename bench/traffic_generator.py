"""The traffic generator's own ceiling: requests/s and CPU per request against a zero-latency fake.

The fake OpenAI server runs in a separate process, so only the generator's CPU time (this
process's user + system time) is charged to it. Goal: >= 1,000 requests/s at concurrency 64 on
2 cores, so the generator is never the bottleneck in front of a proxy that tops out at a few hundred.

    .venv/bin/python -m bench.traffic_generator [--requests 20000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench import _report
from llmops.traffic import TrafficConfig, run

ROOT = Path(__file__).resolve().parent.parent

FAKE = "tests.support.fakes.traffic"  # run as a module from the checkout
KEY = "sk-fake-test-key"
CONCURRENCY = 64
GOAL_RPS = 1000.0


def start_fake(tokens: int) -> tuple[subprocess.Popen, str]:
    """The zero-latency fake in its own process; returns it and its URL once it listens."""
    proc = subprocess.Popen([sys.executable, "-m", FAKE, "--port", "0", "--tokens", str(tokens)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # blocks until the fake prints its port (or dies)
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


def measure(url: str, requests: int, stream: bool, fake: psutil.Process) -> dict:
    """One run at concurrency 64 after a warmup; CPU of this process and of the fake, per request."""
    config = TrafficConfig(url=url, api_key=KEY, max_requests=requests, concurrency=CONCURRENCY,
                           stream=stream, warmup=500, seed=1, max_error_ratio=0.0)
    cpu0, fake0, wall0 = time.process_time(), sum(fake.cpu_times()[:2]), time.perf_counter()
    result = run(config)
    cpu, fake_cpu, wall = (time.process_time() - cpu0, sum(fake.cpu_times()[:2]) - fake0,
                           time.perf_counter() - wall0)
    s = result.summary
    if s["requests"]["ok"] != requests:
        raise RuntimeError(f"only {s['requests']['ok']}/{requests} requests succeeded: {s['failures']}")
    sent = requests + config.warmup
    return {"requests_per_s": s["throughput"]["requests_per_s"], "cpu_ms_per_request": cpu / sent * 1000,
            "fake_cpu_ms_per_request": fake_cpu / sent * 1000, "wall_s": wall,
            "latency_p50_ms": s["latency_s"]["p50"] * 1000, "latency_p99_ms": s["latency_s"]["p99"] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=8, help="content chunks per streamed answer")
    args = parser.parse_args()
    proc, url = start_fake(args.tokens)
    try:
        fake = psutil.Process(proc.pid)
        runs = {mode: [measure(url, args.requests, mode == "stream", fake) for _ in range(args.repeats)]
                for mode in ("stream", "no_stream")}
    finally:
        proc.terminate()
        proc.wait(10)
    med = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in runs.items()}
    metrics = {
        "requests_per_s_c64_stream": _report.metric(round(med["stream"]["requests_per_s"], 1), "requests/s",
                                                     GOAL_RPS, "higher"),
        "cpu_per_request_stream": _report.metric(round(med["stream"]["cpu_ms_per_request"], 4), "ms"),
        "requests_per_s_c64_no_stream": _report.metric(round(med["no_stream"]["requests_per_s"], 1),
                                                        "requests/s", GOAL_RPS, "higher"),
        "cpu_per_request_no_stream": _report.metric(round(med["no_stream"]["cpu_ms_per_request"], 4), "ms"),
    }
    extra = {"concurrency": CONCURRENCY, "requests_per_run": args.requests, "repeats": args.repeats,
             "chunks_per_answer": args.tokens, "runs": runs,
             "note": "median of repeats; the fake runs in its own process and its CPU is not charged; "
                     "fake_cpu_ms_per_request near 1000/requests_per_s means the fake, not the generator, "
                     "was the limit"}
    _report.report("traffic_generator", metrics, extra)


if __name__ == "__main__":
    main()
