"""bench/priority: does the proxy's queue make priority decide the order, without slowing the backend?

One embedded backend (SmolLM2-135M, one slot) and two LiteLLM proxies in front of it, started by the project's
own launcher: one with the queue (QUEUE_ENABLED=true), one without. In one run (docs/queue.md, "Benchmark"):

1. idle: a high-priority streamed request at a time (c=1) through the queue: its TTFT on an idle stack;
2. saturated, in interleaved rounds (queue on, off, off, on, repeated, so that the shared machine's drift falls on
   both arms alike):
   8 low-priority clients (priority 9) in a closed loop fill the backend and one high-priority client (priority 0)
   sends a request every 2 s; the high requests' TTFT p50, the low requests' throughput, the backend's busy share
   and mean service time (its generation time per request), and its own queue's depth (0 with the queue on);
3. added latency at c=1, paired: one-token requests sent alternately to the two proxies, p50 of the differences
   and its 95% confidence interval (order statistics; a few hundred pairs give one of about +-0.5 ms here);
4. no starvation: high-priority load at about half the backend's capacity and 4 low-priority clients; every
   low request must be served before QUEUE_TIMEOUT.

Goals (issue #24): high TTFT p50 (queue on) <= idle TTFT + one low request's mean service time, and <= 0.3x the
same with the queue off; low throughput with the queue on >= 0.95x off; added latency <= 0.2 ms p50; no low
request refused or past QUEUE_TIMEOUT in phase 4. All ratios are within this one run.
"""
from __future__ import annotations

import argparse
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import requests

from bench import _report as benchfmt
from bench._helpers import wait_http

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
BACKEND_PORT, ON_PORT, OFF_PORT = 25734, 18620, 18621  # clear of the stack, the tests and the other benches
MODEL = "smollm2:135m"
CONFIG = f"""\
model_list:
  - model_name: {MODEL}
    litellm_params: {{model: ollama_chat/{MODEL}, api_base: os.environ/OLLAMA_API_BASE}}
litellm_settings:
  num_retries: 0
  callbacks: ["prometheus"]
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""
PROMPT = "Write a short story about a lighthouse keeper and a storm."


def start_backend(logs: Path) -> subprocess.Popen:
    log = open(logs / "backend.log", "wb")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen([PYTHON, str(ROOT / "scripts" / "embedded_backend.py"), "--host", "127.0.0.1",
                             "--port", str(BACKEND_PORT), "--no-access-log", "--num-parallel", "1"], stdout=log, stderr=subprocess.STDOUT,
                            cwd=ROOT)
    wait_http(f"http://127.0.0.1:{BACKEND_PORT}/api/version", 120, proc=proc)
    return proc


def start_proxy(port: int, queue: bool, key: str, tmp: Path, timeout: float, ageing: float) -> subprocess.Popen:
    state = tmp / f"proxy-{port}"
    state.mkdir()
    (state / "litellm_config.yaml").write_text(CONFIG)
    env = {**os.environ, "LITELLM_PORT": str(port), "LITELLM_MASTER_KEY": key, "LLMOPS_STATE_DIR": str(state),
           "LLMOPS_LOG_DIR": str(state), "LLMOPS_ENV_FILE": str(state / "env"), "REQUEST_LOG": "0",
           "OLLAMA_HOSTS": f"http://127.0.0.1:{BACKEND_PORT}", "LITELLM_CONFIG": str(state / "litellm_config.yaml"),
           "QUEUE_ENABLED": "true" if queue else "false", "QUEUE_TIMEOUT": str(timeout), "QUEUE_MAX": "512",
           "QUEUE_AGEING": str(ageing),
           "BIND_HOST": "127.0.0.1", "LITELLM_WORKERS": "1", "REDIS_URL": "", "BACKEND_NUM_PARALLEL": "1"}
    log = open(state / "litellm.log", "wb")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "start_litellm_proxy.sh")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", 180, proc=proc)
    return proc


class Client:
    """One proxy through the official client: a streamed request's TTFT and latency, or its error."""

    def __init__(self, port: int, key: str):
        self.api = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=300)

    def stream(self, priority: int, max_tokens: int, content: str = PROMPT) -> dict:
        started = time.perf_counter()
        first = None
        try:
            stream = self.api.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=max_tokens,
                temperature=0, stream=True, extra_body={"priority": priority})
            for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter()
        except openai.APIStatusError as exc:
            end = time.perf_counter()
            return {"ok": False, "status": exc.status_code, "latency": end - started, "start": started, "end": end}
        end = time.perf_counter()
        return {"ok": True, "ttft": (first or end) - started, "latency": end - started, "start": started, "end": end}


def backend_gauge(prefix: str) -> float:
    """The sum of the backend's /metrics samples whose line starts with `prefix`."""
    text = requests.get(f"http://127.0.0.1:{BACKEND_PORT}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def generation_seconds() -> float:
    """The backend's llm_backend_generation_seconds_sum: the time its one slot has held a sequence so far."""
    return backend_gauge("llm_backend_generation_seconds_sum")


def sample_backend_queue(stop: threading.Event, seen: list[float]) -> None:
    """The backend's own queue depth every 0.1 s until `stop` (with the queue on it must stay 0: at most N in flight)."""
    while not stop.wait(0.1):
        seen.append(backend_gauge("llm_backend_queue_depth"))


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def closed_loop(client: Client, priority: int, max_tokens: int, stop: threading.Event, done: list[dict],
                lock: threading.Lock) -> None:
    """One client sending requests of one priority back to back until `stop`; each result into `done`."""
    while not stop.is_set():
        result = client.stream(priority, max_tokens)
        with lock:
            done.append(result)


def saturated(client: Client, seconds: float, lows: int, high_every: float, max_tokens: int, warmup: float) -> dict:
    """One round: `lows` low-priority clients in a closed loop and one high-priority request every `high_every` s;
    after `warmup` s of that load, what ended inside the next `seconds` (the window), for summary(). The warm-up
    puts both arms in their steady state: without it, the queue-off arm's high requests (which wait ~12 s) sent
    during the window end after it, and the window's backend time goes to low requests instead (the off arm's
    backlog of high requests takes longer than its ~12 s wait to build up: 15 s of warm-up left it short)."""
    stop = threading.Event()
    low_done: list[dict] = []
    high_done: list[dict] = []
    lock = threading.Lock()

    def high_one():
        result = client.stream(0, max_tokens)
        with lock:
            high_done.append(result)

    def high_loop(pool):
        # open loop: one every `high_every` s whatever the last one's fate, so both runs send as many
        while not stop.wait(high_every):
            pool.submit(high_one)

    with ThreadPoolExecutor(lows + 2 + 8) as pool:
        depths: list[float] = []
        futures = [pool.submit(closed_loop, client, 9, max_tokens, stop, low_done, lock) for _ in range(lows)]
        futures += [pool.submit(high_loop, pool), pool.submit(sample_backend_queue, stop, depths)]
        time.sleep(warmup)  # the load runs meanwhile, not counted
        held = generation_seconds()
        started = time.perf_counter()
        time.sleep(seconds)  # the window: the load runs meanwhile
        held = generation_seconds() - held
        stop.set()
        for future in futures:
            future.result()
    window_end = started + seconds

    def in_window(r: dict) -> bool:
        return r["ok"] and started <= r["end"] <= window_end

    sent = [r for r in high_done if r["start"] >= started]  # the high requests sent during the window
    return {"seconds": seconds, "high_ttfts": [r["ttft"] for r in sent if r["ok"]],
            "high_requests": len(sent), "high_failed": sum(not r["ok"] for r in sent),
            "high_served": sum(1 for r in high_done if in_window(r)),
            "low_served": sum(1 for r in low_done if in_window(r)),
            "low_failed": sum(not r["ok"] for r in low_done), "held": held, "depth_max": max(depths, default=0.0)}


def summary(rounds: list[dict]) -> dict:
    """One arm's rounds added up: the high requests' TTFT p50, low and all requests served per second."""
    seconds = sum(r["seconds"] for r in rounds)
    low, high = sum(r["low_served"] for r in rounds), sum(r["high_served"] for r in rounds)
    return {
        "high_ttft_p50_s": median([t for r in rounds for t in r["high_ttfts"]]),
        "high_requests": sum(r["high_requests"] for r in rounds), "high_failed": sum(r["high_failed"] for r in rounds),
        "low_per_s": low / seconds, "low_served": low, "served_per_s": (low + high) / seconds,
        "low_failed": sum(r["low_failed"] for r in rounds),
        # the share of the windows the backend's slot held a sequence (the rest: idle between requests)
        "backend_busy_fraction": round(sum(r["held"] for r in rounds) / seconds, 3),
        # the backend's own queue (sampled every 0.1 s): 0 throughout when the proxy holds the line
        "backend_queue_depth_max": max(r["depth_max"] for r in rounds),
        # one slot: the backend serves one request at a time, so its busy time divided by what it served
        "low_service_s": sum(r["held"] for r in rounds) / max(1, low + high),
        "rounds": len(rounds),
        # each round's own figures: how much the machine drifts between rounds of one arm
        "low_per_s_by_round": [round(r["low_served"] / r["seconds"], 3) for r in rounds],
        "service_s_by_round": [round(r["held"] / max(1, r["low_served"] + r["high_served"]), 3) for r in rounds],
    }


def median_ci95(values: list[float]) -> tuple[float, float]:
    """A distribution-free 95% confidence interval of the median: the order statistics n/2 -+ 1.96 sqrt(n)/2."""
    ordered, n = sorted(values), len(values)
    half = 1.96 * math.sqrt(n) / 2
    return ordered[max(0, math.floor(n / 2 - half))], ordered[min(n - 1, math.ceil(n / 2 + half))]


def paired_overhead(on: Client, off: Client, pairs: int) -> dict:
    """One-token requests alternately to the two proxies (order swapped each pair); p50 of on - off, with its CI."""
    diffs = []
    for i in range(pairs):
        first, second = (on, off) if i % 2 == 0 else (off, on)
        a = first.stream(10, 1, "Say hi")["latency"]
        b = second.stream(10, 1, "Say hi")["latency"]
        diffs.append((a - b) if first is on else (b - a))
    low, high = median_ci95(diffs)
    return {"added_p50_ms": round(statistics.median(diffs) * 1000, 3), "pairs": pairs,
            "added_p50_ci95_ms": [round(low * 1000, 3), round(high * 1000, 3)],
            "abs_diff_p50_ms": round(statistics.median([abs(d) for d in diffs]) * 1000, 3)}


def no_starvation(client: Client, seconds: float, service: float, timeout: float, max_tokens: int) -> dict:
    """High-priority requests at ~half the backend's capacity, 4 low clients filling the rest."""
    stop = threading.Event()
    lows: list[dict] = []
    lock = threading.Lock()

    def high_loop():
        while not stop.wait(2 * service):  # one request every two service times: half the capacity
            client.stream(0, max_tokens)

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(closed_loop, client, 9, max_tokens, stop, lows, lock) for _ in range(4)]
        futures.append(pool.submit(high_loop))
        time.sleep(seconds)  # the phase's length: the load runs meanwhile
        stop.set()
        for future in futures:
            future.result()
    return {"low_served": sum(r["ok"] for r in lows), "low_refused": sum(not r["ok"] for r in lows),
            "low_latency_max_s": round(max((r["latency"] for r in lows), default=0.0), 3), "timeout_s": timeout}


def judged(value: float, unit: str, goal: float | None, better: str = "lower", baseline: str | None = None) -> dict:
    """_report.judged, a miss discussed in docs/queue.md."""
    return benchfmt.judged(value, unit, goal, better, baseline, doc="docs/queue.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0,
                        help="saturated time (the windows) of each arm, in --rounds rounds")
    parser.add_argument("--rounds", type=int, default=4, help="saturated rounds of each arm, interleaved on, off, off, on")
    parser.add_argument("--starve-seconds", type=float, default=30.0, help="length of the no-starvation phase")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=600, help="paired one-token requests for the added latency")
    parser.add_argument("--timeout", type=float, default=60.0, help="QUEUE_TIMEOUT of the queue-on proxy")
    parser.add_argument("--warmup", type=float, default=30.0,
                        help="seconds of load before each saturated round's window (longer than the off arm's wait)")
    parser.add_argument("--ageing", type=float, default=5.0,
                        help="QUEUE_AGEING of the queue-on proxy (the stack's default is 1 s; see docs/queue.md)")
    args = parser.parse_args(argv)
    key = "sk-bench-" + secrets.token_hex(8)
    procs = []
    with tempfile.TemporaryDirectory(prefix="llmops-bench-priority-") as tmp_dir:
        tmp = Path(tmp_dir)
        try:
            procs.append(start_backend(tmp))
            procs.append(start_proxy(ON_PORT, True, key, tmp, args.timeout, args.ageing))
            procs.append(start_proxy(OFF_PORT, False, key, tmp, args.timeout, args.ageing))
            on, off = Client(ON_PORT, key), Client(OFF_PORT, key)
            for client in (on, off):  # warm: the model loaded, both proxies' first-request costs paid
                client.stream(0, 4, "Say hi")
            idle = median([on.stream(0, args.max_tokens)["ttft"] for _ in range(8)])
            # The arms alternate in rounds (on, off, off, on): the shared machine's drift falls on both alike.
            rounds: dict[str, list[dict]] = {"on": [], "off": []}
            order = [("on", "off", "off", "on")[i % 4] for i in range(2 * args.rounds)]
            for arm in order:
                rounds[arm].append(saturated(on if arm == "on" else off, args.seconds / args.rounds, 8, 2.0,
                                             args.max_tokens, args.warmup))
            queued, plain = summary(rounds["on"]), summary(rounds["off"])
            overhead = paired_overhead(on, off, args.pairs)
            starve = no_starvation(on, args.starve_seconds, queued["low_service_s"], args.timeout, args.max_tokens)
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, 15)
                    except (ProcessLookupError, PermissionError):
                        proc.terminate()
                    proc.wait(timeout=30)
    bound = idle + queued["low_service_s"]
    metrics = {
        "high_ttft_p50_queue_on_s": judged(round(queued["high_ttft_p50_s"], 3), "s", round(bound, 3)),
        "high_ttft_p50_queue_off_s": judged(round(plain["high_ttft_p50_s"], 3), "s", None),
        "high_ttft_on_over_off": judged(round(queued["high_ttft_p50_s"] / plain["high_ttft_p50_s"], 3), "x",
                                                 0.3, baseline="queue off, same run"),
        "low_throughput_on_over_off": judged(round(queued["low_per_s"] / plain["low_per_s"], 3), "x", 0.95,
                                                      better="higher", baseline="queue off, same run"),
        "served_on_over_off": judged(round(queued["served_per_s"] / plain["served_per_s"], 3), "x", None,
                                              better="higher", baseline="queue off, same run (low and high)"),
        "added_latency_p50_ms": judged(overhead["added_p50_ms"], "ms", 0.2, baseline="queue off, paired"),
        "starved_low_requests": judged(starve["low_refused"], "requests", 0),
    }
    extra = {"idle_high_ttft_p50_s": round(idle, 3), "queue_on": queued, "queue_off": plain, "paired": overhead,
             "no_starvation": starve, "seconds": args.seconds, "warmup_s": args.warmup, "queue_ageing_s": args.ageing,
             "max_tokens": args.max_tokens,
             "backend_slots": 1, "model": MODEL}
    benchfmt.report("priority", metrics, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
