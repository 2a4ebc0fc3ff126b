"""bench/proxy_overhead: a zero-latency fake Ollama hit directly and through the LiteLLM proxy.

Same run, concurrency 1 (added p50 latency) and 10 (requests/s), each proxy worker warmed up first;
with one and two proxy workers. A py-spy profile of the one-worker proxy under load gives the top frames.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmops import benchfmt  # noqa: E402

KEY = "sk-bench-proxy-overhead"
BODY_DIRECT = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "stream": False}
BODY_PROXY = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 90) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready in {timeout} s")


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


def measure(url: str, body: dict, headers: dict, warm: int) -> dict:
    asyncio.run(throughput(url, body, headers, 10, 0.1) if warm == 0 else latency(url, body, headers, warm))
    if warm:  # warm every worker: concurrent requests spread over them
        asyncio.run(throughput(url, body, headers, 10, 5))
    lat = asyncio.run(latency(url, body, headers, 300))
    rps, errors = asyncio.run(throughput(url, body, headers, 10, 10))
    return {"p50_ms": statistics.median(lat), "p99_ms": sorted(lat)[int(len(lat) * 0.99) - 1], "rps": rps,
            "errors": errors}


def start_proxy(fake_port: int, workers: int, tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ)
    env.update({"LITELLM_PORT": str(port), "OLLAMA_HOSTS": f"http://127.0.0.1:{fake_port}",
                "LITELLM_WORKERS": str(workers), "LLMOPS_STATE_DIR": str(tmp / f"state{workers}"),
                "LLMOPS_ENV_FILE": str(tmp / "env"), "LITELLM_MASTER_KEY": KEY})
    log = open(tmp / f"litellm{workers}.log", "w")
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "start_litellm_proxy.sh")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health/liveliness")
    return proc, url


def profile(pid: int, seconds: int, url: str, headers: dict, tmp: Path) -> list[str]:
    """Top frames (own time) of the proxy under concurrency-10 load, from py-spy."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return ["py-spy not installed"]
    raw = tmp / "profile.txt"
    rec = subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(seconds), "--format", "raw",
                            "--output", str(raw), "--nonblocking"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    asyncio.run(throughput(url + "/v1/chat/completions", BODY_PROXY, headers, 10, seconds))
    rec.wait(timeout=60)
    if not raw.exists():
        return ["py-spy produced no profile"]
    leaf, inclusive, total = Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        total += int(count)
        leaf[frames[-1]] += int(count)
        for frame in set(frames):
            if "litellm" in frame:
                inclusive[frame] += int(count)
    top = [f"{100 * c / total:.1f}% incl {frame}" for frame, c in inclusive.most_common(40)
           if not any(k in frame for k in ("run_forever", "_run_once", "_run (", "serve", "main", "<module>"))][:15]
    return top


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    fake_port = free_port()
    fake = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_fake_ollama.py"), "--port", str(fake_port)],
                            start_new_session=True)
    procs = [fake]
    try:
        wait_http(f"http://127.0.0.1:{fake_port}/api/version")
        direct = measure(f"http://127.0.0.1:{fake_port}/api/chat", BODY_DIRECT, {}, warm=0)
        headers = {"Authorization": f"Bearer {KEY}", "User-Agent": "llmops-bench/1"}
        results = {}
        top = []
        for workers in (1, 2):
            proc, url = start_proxy(fake_port, workers, tmp)
            procs.append(proc)
            results[workers] = measure(url + "/v1/chat/completions", BODY_PROXY, headers, warm=200)
            if workers == 1:
                top = profile(proc.pid, 8, url, headers, tmp)
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
            procs.remove(proc)
        print(f"direct: {direct}")
        for workers, r in results.items():
            print(f"proxy, {workers} worker(s): {r}")
        best = min(results.values(), key=lambda r: r["p50_ms"])
        best_rps = max(r["rps"] for r in results.values())
        metrics = {
            "direct_p50_ms": benchfmt.metric(round(direct["p50_ms"], 2), "ms", None, "lower"),
            "direct_rps_c10": benchfmt.metric(round(direct["rps"]), "requests/s", None, "higher"),
            "added_p50_ms_c1_1worker": benchfmt.metric(
                round(results[1]["p50_ms"] - direct["p50_ms"], 2), "ms", 8, "lower", "defaults: +12-16 ms"),
            "added_p50_ms_c1_2workers": benchfmt.metric(
                round(results[2]["p50_ms"] - direct["p50_ms"], 2), "ms", 8, "lower", "defaults: +12-16 ms"),
            "proxy_rps_c10_1worker": benchfmt.metric(round(results[1]["rps"]), "requests/s", 200, "higher",
                                                     "defaults: 60-90 requests/s"),
            "proxy_rps_c10_2workers": benchfmt.metric(round(results[2]["rps"]), "requests/s", 200, "higher",
                                                      "defaults: 60-90 requests/s"),
            "best_added_p50_ms": benchfmt.metric(round(best["p50_ms"] - direct["p50_ms"], 2), "ms", 8, "lower"),
            "best_rps_c10": benchfmt.metric(round(best_rps), "requests/s", 200, "higher"),
        }
        path = benchfmt.write("proxy_overhead", metrics, {
            "direct": direct, "proxy_1_worker": results[1], "proxy_2_workers": results[2],
            "profile_top_frames_1_worker": top,
            "config": "litellm_config.yaml as committed (zero price in model_info), LITELLM_LOG=WARNING",
        })
        print("\n".join(top))
        print(path)
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
