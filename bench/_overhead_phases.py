"""bench/proxy_overhead's phases: the interleaved rounds' latency and throughput blocks, the import audit, the
request log's paired phases (the two shipped 1-worker proxies alone, log on and off) and its saturation, the
profile and the machine-speed probe (a helper, not a benchmark: bench.sh skips _*.py)."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

from bench import _requestlog_cost
from bench._overhead_variants import BODY_PROXY, HEADERS, Running, cpu_seconds
from llmops.polling import poll_until
from tests.support.audited_proxy import failing_imports, read_snapshot

ROOT = Path(__file__).resolve().parent.parent

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
LATENCY_N = 50         # sequential requests to each variant per round, interleaved
THROUGHPUT_S = 1.5     # seconds per concurrency-10 block
AUDIT_N = 50           # sequential requests between the two import-audit snapshots



async def latency(url: str, body: dict, headers: dict, n: int) -> list[float]:
    async with aiohttp.ClientSession(headers=headers) as session:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            async with session.post(url, json=body) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            times.append((time.perf_counter() - started) * 1000)
        return times


async def latency_interleaved(variants: list, n: int) -> dict[str, list[float]]:
    """n sequential requests to each variant, one variant after the other request by request (order rotated):
    on a shared machine whose speed changes by the second, every variant sees the same moments."""
    sessions = {v.name: aiohttp.ClientSession(headers=v.headers) for v in variants}
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    try:
        for i in range(n):
            for v in variants[i % len(variants):] + variants[:i % len(variants)]:
                started = time.perf_counter()
                async with sessions[v.name].post(v.url, json=v.body) as resp:
                    await resp.read()
                    assert resp.status == 200, (v.name, resp.status)
                times[v.name].append((time.perf_counter() - started) * 1000)
    finally:
        for session in sessions.values():
            await session.close()
    return times


def interleaved_with_cpu(variants: list, n: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """latency_interleaved, and each variant's proxy CPU (ms) per request over those requests."""
    before = {v.name: cpu_seconds(v.proc) for v in variants}
    timed = asyncio.run(latency_interleaved(variants, n))
    return timed, {v.name: (cpu_seconds(v.proc) - before[v.name]) * 1000 / n for v in variants}


async def throughput(url: str, body: dict, headers: dict, concurrency: int, seconds: float) -> tuple[float, int]:
    done = errors = 0
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        async def worker():
            nonlocal done, errors
            while time.perf_counter() < stop:
                async with session.post(url, json=body) as resp:
                    await resp.read()
                    if resp.status == 200:
                        done += 1
                    else:
                        errors += 1
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started), errors


def sdk_probe(model_list: list) -> float:
    """Median ms of LiteLLM's own Router.acompletion, in a plain process (no proxy) against the same fake.

    This VM's speed drifts; this figure, taken before and after, shows how fast it ran LiteLLM's code
    at the time (a plain CPU loop barely moves when the proxy's figures move by a third)."""
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False", LITELLM_LOG="ERROR")
    out = subprocess.run([sys.executable, "-m", "bench._sdk_probe", json.dumps(model_list)], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"SDK probe failed: {out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def audit_imports(v: Running) -> dict:
    """Failing imports per request of a warm proxy: the audit's counts around AUDIT_N sequential requests.

    "total" counts failing import statements (what re-runs a module each time); "import_events_total" also
    counts the failing imports nested inside them."""
    before = read_snapshot(v.proc.pid, str(v.audit))
    asyncio.run(latency(v.url, v.body, v.headers, AUDIT_N))
    after = read_snapshot(v.proc.pid, str(v.audit))
    failed, events = failing_imports(before, after), failing_imports(before, after, "imports")
    return {"total": round(sum(failed.values()) / AUDIT_N, 2),
            "by_module": {name: round(count / AUDIT_N, 2) for name, count in failed.most_common()},
            "import_events_total": round(sum(events.values()) / AUDIT_N, 2),
            "import_events_by_module": {name: round(count / AUDIT_N, 2) for name, count in events.most_common()}}


SIDE_BLOCKS, SIDE_S = 10, 6.0  # the request log's side-by-side throughput: blocks, seconds each
PAIR_N = 1000                  # the request log's paired latency: sequential requests to each of the two proxies


def requestlog_pair(on: Running, off: Running) -> dict:
    """The two shipped 1-worker proxies alone, log on and log off, one request to each in turn (order alternating),
    PAIR_N each: the added p50 and the CPU per request at concurrency 1 from the same moments of the machine. In
    the rounds each proxy gets 50 requests among 13 variants, and their p50s move by ±0.6 ms a round."""
    timed, cpu = interleaved_with_cpu([on, off], PAIR_N)
    p50 = {name: statistics.median(times) for name, times in timed.items()}
    return {"requests_each": PAIR_N, "p50_ms": {"on": round(p50[on.name], 3), "off": round(p50[off.name], 3)},
            "added_p50_ms": round(p50[on.name] - p50[off.name], 3),
            "cpu_ms_per_request": {"on": round(cpu[on.name], 3), "off": round(cpu[off.name], 3)},
            "cpu_ratio": round(cpu[on.name] / cpu[off.name], 3)}


def requestlog_side_by_side(on: Running, off: Running) -> dict:
    """Both shipped 1-worker proxies, log on and log off, under c=10 load at the same time: each block splits the
    same moments of the machine between them, which the one-after-the-other 1.5 s blocks cannot."""
    async def block() -> tuple[float, float]:
        (a, _), (b, _) = await asyncio.gather(throughput(on.url, on.body, on.headers, 10, SIDE_S),
                                              throughput(off.url, off.body, off.headers, 10, SIDE_S))
        return a, b

    blocks = [asyncio.run(block()) for _ in range(SIDE_BLOCKS)]
    return {"on_over_off_per_block": [round(a / b, 3) for a, b in blocks],
            "on_over_off": round(sum(a for a, _ in blocks) / sum(b for _, b in blocks), 3),
            "blocks": SIDE_BLOCKS, "seconds_per_block": SIDE_S}


def requestlog_saturation(v: Running, tmp: Path) -> dict:
    """Rows the request log wrote per second while the shipped 1-worker proxy was saturated (c=10), and its writer
    thread and callback on their own."""
    before = _requestlog_cost.count_rows(v.db)
    started = time.perf_counter()
    rps, errors = asyncio.run(throughput(v.url, v.body, v.headers, 10, THROUGHPUT_S * 2))
    seconds = time.perf_counter() - started
    served = round(rps * seconds)
    # The last batch leaves the queue within the writer's flush interval: wait for the rows, not a fixed time.
    poll_until(lambda: _requestlog_cost.count_rows(v.db) - before >= served, 10)
    rows = _requestlog_cost.count_rows(v.db) - before
    return {"rows_per_s_proxy_saturated": round(rows / seconds), "rows_written": rows,
            "requests_served": served, "proxy_rps": round(rps), "errors": errors,
            "writer_alone": _requestlog_cost.writer_alone(tmp / "writer-alone.db"),
            "callback_us_per_request": _requestlog_cost.callback_us(tmp / "callback-alone.db")}


def profile(pid: int, seconds: int, url: str, tmp: Path) -> list[str]:
    """Top frames (inclusive, GIL holder only) of the proxy under concurrency-10 load, from py-spy."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return ["py-spy not installed"]
    raw = tmp / "profile.txt"
    rec = subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(seconds), "--format", "raw",
                            "--output", str(raw), "--nonblocking", "--gil", "--rate", "250"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    asyncio.run(throughput(url, BODY_PROXY, HEADERS, 10, seconds))
    rec.wait(timeout=60)
    if not raw.exists():
        return ["py-spy produced no profile"]
    inclusive, total = Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        for frame in set(stack.split(";")):
            if "litellm" in frame:
                inclusive[frame] += int(count)
    skip = ("run_forever", "_run_once", "_run (", "serve", "main", "<module>", "Middleware", "run_server")
    return [f"{100 * c / total:.1f}% incl {frame}" for frame, c in inclusive.most_common(80)
            if not any(k in frame for k in skip)][:15]

