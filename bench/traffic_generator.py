"""The traffic generator's own ceiling: requests/s against a zero-latency fake, as a ratio to a bare client.

The fake OpenAI server runs in a separate process, so only the client's CPU time (this process's user +
system time) is charged to it. In the same run, interleaved with the generator's runs, a bare aiohttp loop
(the same concurrency, session, event loop and request body; it reads each answer and does nothing else)
sends the same number of requests to the same fake: it is the most any Python client on this machine gets
from that fake. Goal: the generator's requests/s >= 0.7x the bare loop's, streamed and not, so its own
bookkeeping (timings, outcome classes, records) never decides a run's throughput.

    .venv/bin/python -m bench.traffic_generator [--requests 20000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil

from bench import _report
from llmops.traffic import TrafficConfig, datasets, run
from llmops.traffic.client import dumps
from llmops.traffic.config import DEFAULT_MAX_TOKENS
from llmops.traffic.prompts import BANK_DIR

ROOT = Path(__file__).resolve().parent.parent

FAKE = "tests.support.fakes.traffic"  # run as a module from the checkout
KEY = "sk-fake-test-key"
MODEL = "fake-model"  # the one model the fake lists
CONCURRENCY = 64
WARMUP = 500
GOAL_RATIO = 0.7  # the generator's requests/s over the bare loop's, same run


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
    """One generator run at concurrency 64 after a warmup; CPU of this process and of the fake, per request."""
    config = TrafficConfig(url=url, api_key=KEY, max_requests=requests, concurrency=CONCURRENCY,
                           stream=stream, warmup=WARMUP, seed=1, max_error_ratio=0.0)
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


async def _bare(url: str, requests: int, stream: bool) -> float:
    """The floor: 64 tasks posting the bank's prompts as the generator does, each answer read (its lines when
    streamed) and nothing else done; the timed part's requests/s."""
    extra = {"stream_options": {"include_usage": True}} if stream else {}
    bodies = [dumps({"model": MODEL, "messages": list(p.messages), "max_tokens": p.max_tokens or DEFAULT_MAX_TOKENS,
                     "stream": stream, **extra}) for p in datasets.load(BANK_DIR).prompts]
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    endpoint = f"{url}/v1/chat/completions"
    failed = 0

    async def one(session: aiohttp.ClientSession, index: int) -> None:
        nonlocal failed
        async with session.post(endpoint, data=bodies[index % len(bodies)]) as resp:
            if resp.status != 200:
                failed += 1
            if stream:
                async for _ in resp.content:  # an SSE client reads line by line
                    pass
            else:
                await resp.json()

    async def phase(session: aiohttp.ClientSession, count: int) -> float:
        left = iter(range(count))

        async def worker() -> None:
            for index in left:
                await one(session, index)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.perf_counter() - started

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=headers, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=None)) as session:
        await phase(session, WARMUP)
        seconds = await phase(session, requests)
    if failed:
        raise RuntimeError(f"the bare loop got {failed} answers that were not 200")
    return requests / seconds


def measure_bare(url: str, requests: int, stream: bool, fake: psutil.Process) -> dict:
    """One bare-loop run on the generator's event loop (uvloop when installed), with its CPU per request."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with litellm
        factory = None
    cpu0, fake0 = time.process_time(), sum(fake.cpu_times()[:2])
    with asyncio.Runner(loop_factory=factory) as runner:
        rps = runner.run(_bare(url, requests, stream))
    sent = requests + WARMUP
    return {"requests_per_s": rps, "cpu_ms_per_request": (time.process_time() - cpu0) / sent * 1000,
            "fake_cpu_ms_per_request": (sum(fake.cpu_times()[:2]) - fake0) / sent * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=8, help="content chunks per streamed answer")
    args = parser.parse_args()
    proc, url = start_fake(args.tokens)
    modes = ("stream", "no_stream")
    runs: dict[str, list[dict]] = {mode: [] for mode in modes}
    bare: dict[str, list[dict]] = {mode: [] for mode in modes}
    try:
        fake = psutil.Process(proc.pid)
        # Interleaved, so that load from other processes falls on both sides alike.
        for _ in range(args.repeats):
            for mode in modes:
                runs[mode].append(measure(url, args.requests, mode == "stream", fake))
                bare[mode].append(measure_bare(url, args.requests, mode == "stream", fake))
    finally:
        proc.terminate()
        proc.wait(10)
    med = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in runs.items()}
    floor = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in bare.items()}
    m = _report.metric
    metrics = {}
    for mode in modes:
        ratio = med[mode]["requests_per_s"] / floor[mode]["requests_per_s"]
        metrics[f"requests_per_s_ratio_{mode}"] = m(round(ratio, 3), "ratio", GOAL_RATIO, "higher",
                                                    "a bare aiohttp loop, same fake, same run")
        metrics[f"requests_per_s_c64_{mode}"] = m(round(med[mode]["requests_per_s"], 1), "requests/s", better="higher")
        metrics[f"bare_requests_per_s_c64_{mode}"] = m(round(floor[mode]["requests_per_s"], 1), "requests/s",
                                                       better="higher")
        metrics[f"cpu_per_request_{mode}"] = m(round(med[mode]["cpu_ms_per_request"], 4), "ms")
        metrics[f"bare_cpu_per_request_{mode}"] = m(round(floor[mode]["cpu_ms_per_request"], 4), "ms")
    extra = {"concurrency": CONCURRENCY, "requests_per_run": args.requests, "warmup": WARMUP, "repeats": args.repeats,
             "chunks_per_answer": args.tokens, "runs": runs, "bare_runs": bare,
             "note": "median of repeats, the generator's and the bare loop's runs interleaved; the fake runs in "
                     "its own process and its CPU is not charged; fake_cpu_ms_per_request near "
                     "1000/requests_per_s means the fake, not the client, was the limit"}
    _report.report("traffic_generator", metrics, extra)


if __name__ == "__main__":
    main()
