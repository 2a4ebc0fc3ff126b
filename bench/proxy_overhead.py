"""bench/proxy_overhead: a zero-latency fake Ollama hit directly and through the LiteLLM proxy.

Three proxies run side by side against the same fake: the shipped config with one worker and with two, and,
as the baseline, the same rendered config without its `model_info` lines (what LiteLLM's docs would have
you write). This VM's speed drifts (the same request cost 4 ms of LiteLLM's time at one moment and 7.5 ms
half an hour later), so the variants are measured in interleaved rounds (order rotated each round) and each
figure is the median over the rounds: comparisons between variants hold, absolute figures move with the
machine. LiteLLM's own Router, in a plain process against the same fake, is timed before and after, so a
reader can see how fast the machine ran LiteLLM's code at the time. Concurrency 1 gives the added p50 latency
(keep-alive connection, back to back); concurrency 10 the requests/s. A py-spy profile (GIL holder only) of
the one-worker proxy under load gives the top frames.
"""
from __future__ import annotations

import asyncio
import json
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
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmops import benchfmt, proxyconf, settings  # noqa: E402

KEY = "sk-bench-proxy-overhead"
BODY_DIRECT = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "stream": False}
BODY_PROXY = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
HEADERS = {"Authorization": f"Bearer {KEY}", "User-Agent": "llmops-bench/1"}
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
LATENCY_N = 150        # sequential requests per latency block
THROUGHPUT_S = 3.0     # seconds per concurrency-10 block


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


SDK_PROBE = r"""
import asyncio, json, statistics, sys, time
import litellm
router = litellm.Router(model_list=json.loads(sys.argv[1]))
async def main():
    times = []
    for i in range(400):
        started = time.perf_counter()
        await router.acompletion(model="smollm2:135m", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        if i >= 100:
            times.append((time.perf_counter() - started) * 1000)
    print(round(statistics.median(times), 2))
asyncio.run(main())
"""


def sdk_probe(model_list: list) -> float:
    """Median ms of LiteLLM's own Router.acompletion, in a plain process (no proxy) against the same fake.

    This VM's speed drifts; this figure, taken before and after, shows how fast it ran LiteLLM's code
    at the time (a plain CPU loop barely moves when the proxy's figures move by a third)."""
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False", LITELLM_LOG="ERROR")
    out = subprocess.run([sys.executable, "-c", SDK_PROBE, json.dumps(model_list)], capture_output=True, text=True,
                         env=env, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"SDK probe failed: {out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


class Variant:
    def __init__(self, name: str, url: str, proc: subprocess.Popen | None, note: str):
        self.name, self.url, self.proc, self.note = name, url, proc, note
        self.body = BODY_DIRECT if proc is None else BODY_PROXY
        self.headers = {} if proc is None else HEADERS
        self.p50s: list[float] = []
        self.p99s: list[float] = []
        self.rps: list[float] = []
        self.errors = 0

    def summary(self) -> dict:
        return {"p50_ms": statistics.median(self.p50s), "p99_ms": statistics.median(self.p99s),
                "rps": statistics.median(self.rps), "errors": self.errors,
                "p50_ms_per_round": [round(x, 2) for x in self.p50s], "rps_per_round": [round(x) for x in self.rps],
                "config": self.note}


def start_shipped(fake_port: int, workers: int, tmp: Path, tag: str = "", **extra: str) -> tuple[subprocess.Popen, str]:
    """The proxy as `make start` runs it: scripts/start_litellm_proxy.sh with the committed config."""
    port = free_port()
    env = dict(os.environ)
    env.update({"LITELLM_PORT": str(port), "OLLAMA_HOSTS": f"http://127.0.0.1:{fake_port}",
                "LITELLM_WORKERS": str(workers), "LLMOPS_STATE_DIR": str(tmp / f"state{workers}{tag}"),
                "LLMOPS_ENV_FILE": str(tmp / "env"), "LITELLM_MASTER_KEY": KEY,
                "REQUEST_LOG_PATH": str(tmp / f"requests{workers}{tag}.db"), **extra})
    log = open(tmp / f"litellm{workers}{tag}.log", "w")
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "start_litellm_proxy.sh")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def start_baseline(fake_port: int, tmp: Path) -> tuple[subprocess.Popen, str]:
    """The same rendered config and environment, one worker, but without the model_info lines."""
    port = free_port()
    s = settings.load(env_file=tmp / "env", environ={"OLLAMA_HOSTS": f"http://127.0.0.1:{fake_port}"})
    data = proxyconf.render(s)
    for deployment in data["model_list"]:
        deployment.pop("model_info", None)
    path = tmp / "baseline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    env = dict(os.environ, LITELLM_MASTER_KEY=KEY, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False",
               LITELLM_LOG="WARNING")
    log = open(tmp / "litellm-baseline.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "litellm"), "--config", str(path), "--host",
                             "127.0.0.1", "--port", str(port), "--num_workers", "1"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def requestlog_saturation(url: str, db: Path) -> dict:
    """Rows the request log wrote per second while the 1-worker proxy was saturated (c=10), and its writer alone."""
    import sqlite3

    from llmops.requestlog import writer

    def count() -> int:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM requests").fetchone()[0]

    before, started = count(), time.perf_counter()
    rps, _ = asyncio.run(throughput(url, BODY_PROXY, HEADERS, 10, THROUGHPUT_S * 2))
    time.sleep(writer.FLUSH_SECONDS * 3)  # the last batch
    rows_per_s = (count() - before) / (time.perf_counter() - started)
    # The writer thread on its own: how far it is from being the bottleneck.
    alone = writer.Writer(db.with_name("writer-alone.db"))
    n = 20_000
    rows = [{"call_id": f"bench-{i}", "ts": time.time(), "outcome": "ok", "status": 200, "model": "smollm2:135m",
             "kind": "chat", "attempts": 1, "rank": 3, "user_agent": "llmops-bench/1"} for i in range(n)]
    alone.start()
    t0 = time.perf_counter()
    for row in rows:
        alone.queue.put(row)  # blocking: the writer's pace, not the queue's size
    alone.close(timeout=120)
    return {"rows_per_s_proxy_saturated": rows_per_s, "proxy_rps": rps,
            "writer_alone_rows_per_s": n / (time.perf_counter() - t0), "writer_alone_dropped": alone.dropped,
            "callback_us_per_request": callback_cost_us(db.with_name("callback-alone.db"))}


def callback_cost_us(db: Path, n: int = 5000) -> float:
    """Microseconds the callback spends on the proxy's event loop per request (building the row, queueing it),
    with its writer thread running: a figure this shared machine cannot blur the way end-to-end p50s are blurred."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # importing LiteLLM must not try the network
    from llmops.requestlog.callback import RANK_SUCCESS, RequestLog

    log = RequestLog(environ={"REQUEST_LOG_PATH": str(db)})
    slo = {"litellm_call_id": "", "call_type": "acompletion", "model_group": "smollm2:135m", "stream": False,
           "api_base": "http://127.0.0.1:11434/api/chat", "startTime": time.time(), "endTime": time.time() + 0.01,
           "completionStartTime": time.time() + 0.01, "response_time": 0.01, "prompt_tokens": 9,
           "completion_tokens": 4, "metadata": {"user_api_key_hash": "h", "user_api_key_user_agent": "llmops-bench/1"},
           "response": {"choices": [{"finish_reason": "stop", "message": {"content": "ok"}}]}}
    kwargs = {"standard_logging_object": slo, "litellm_params": {"metadata": {},
              "proxy_server_request": {"body": {"model": "smollm2:135m"}, "headers": {}}}}
    t0 = time.perf_counter()
    for i in range(n):
        slo["litellm_call_id"] = f"cb-{i}"
        log._event(kwargs, None, RANK_SUCCESS)
    spent = time.perf_counter() - t0
    log.writer().close(timeout=60)
    return round(spent / n * 1e6, 1)


def requestlog_metrics(by: dict, log_rows: dict) -> dict:
    """The request log's cost: the shipped 1-worker proxy with the log on against the same proxy with it off."""
    on, off = by["shipped_1w"], by["shipped_1w_nolog"]
    return {
        "requestlog_added_p50_ms_c1": benchfmt.metric(round(on["p50_ms"] - off["p50_ms"], 2), "ms", 0.3, "lower",
                                                      "shipped 1 worker, log on minus log off, same rounds"),
        "requestlog_rps_cost_c10": benchfmt.metric(round(1 - on["rps"] / off["rps"], 3), "ratio", 0.05, "lower",
                                                   "share of c=10 throughput the log costs, same rounds"),
        "requestlog_rows_per_s_saturated": benchfmt.metric(round(log_rows["rows_per_s_proxy_saturated"]), "rows/s",
                                                           None, "higher", "rows written while the proxy was saturated"),
        "requestlog_writer_alone_rows_per_s": benchfmt.metric(round(log_rows["writer_alone_rows_per_s"]), "rows/s",
                                                              None, "higher", "the writer thread alone, 20,000 rows"),
        "requestlog_callback_us_per_request": benchfmt.metric(log_rows["callback_us_per_request"], "us", 300,
                                                              "lower", "the callback's own time per request, "
                                                              "writer running (the 0.3 ms goal's share it can take)"),
    }


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


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    fake_port = free_port()
    fake = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_fake_ollama.py"), "--port", str(fake_port)],
                            start_new_session=True)
    procs = [fake]
    try:
        wait_http(f"http://127.0.0.1:{fake_port}/api/version")
        shipped_models = proxyconf.render(settings.load(env_file=tmp / "env", environ={
            "OLLAMA_HOSTS": f"http://127.0.0.1:{fake_port}"}))["model_list"]
        speed_before = sdk_probe(shipped_models)
        started = [("baseline_1w", *start_baseline(fake_port, tmp),
                    "rendered config without model_info, 1 worker"),
                   ("shipped_1w", *start_shipped(fake_port, 1, tmp), "litellm_config.yaml as shipped, 1 worker"),
                   ("shipped_2w", *start_shipped(fake_port, 2, tmp), "litellm_config.yaml as shipped, 2 workers"),
                   # The request log (docs/request-log.md) is on in the shipped config; this is the same proxy without it.
                   ("shipped_1w_nolog", *start_shipped(fake_port, 1, tmp, "nolog", REQUEST_LOG="0"),
                    "litellm_config.yaml as shipped, 1 worker, REQUEST_LOG=0")]
        variants = [Variant("direct", f"http://127.0.0.1:{fake_port}/api/chat", None, "the fake Ollama itself")]
        for name, proc, url, note in started:
            procs.append(proc)
            wait_http(url + "/health/liveliness", timeout=180)
            variants.append(Variant(name, url + "/v1/chat/completions", proc, note))
        for v in variants:  # warm up; concurrent requests reach every worker
            asyncio.run(latency(v.url, v.body, v.headers, 200))
            asyncio.run(throughput(v.url, v.body, v.headers, 10, 3))
        for r in range(ROUNDS):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                lat = sorted(asyncio.run(latency(v.url, v.body, v.headers, LATENCY_N)))
                v.p50s.append(statistics.median(lat))
                v.p99s.append(lat[int(len(lat) * 0.99) - 1])
            for v in order:
                rps, errors = asyncio.run(throughput(v.url, v.body, v.headers, 10, THROUGHPUT_S))
                v.rps.append(rps)
                v.errors += errors
        by = {v.name: v.summary() for v in variants}
        log_rows = requestlog_saturation(variants[2].url, tmp / "requests1.db")
        top = profile(started[1][1].pid, 8, variants[2].url, tmp)
        speed_after = sdk_probe(shipped_models)
        for name, r in by.items():
            print(f"{name:12s} p50 {r['p50_ms']:.2f} ms {r['p50_ms_per_round']}  c=10 {r['rps']:.0f} req/s "
                  f"{r['rps_per_round']}")
        direct = by["direct"]["p50_ms"]

        def added(name: str) -> float:
            return round(by[name]["p50_ms"] - direct, 2)

        baseline = f"same config without model_info, same run: +{added('baseline_1w')} ms"
        baseline_rps = f"same config without model_info, same run: {by['baseline_1w']['rps']:.0f} requests/s"
        metrics = {
            "direct_p50_ms": benchfmt.metric(round(direct, 2), "ms", None, "lower"),
            "direct_rps_c10": benchfmt.metric(round(by["direct"]["rps"]), "requests/s", None, "higher"),
            "added_p50_ms_c1_baseline": benchfmt.metric(added("baseline_1w"), "ms", None, "lower",
                                                        "issue: LiteLLM defaults +12-16 ms"),
            "added_p50_ms_c1_1worker": benchfmt.metric(added("shipped_1w"), "ms", 8, "lower", baseline),
            "added_p50_ms_c1_2workers": benchfmt.metric(added("shipped_2w"), "ms", 8, "lower", baseline),
            "proxy_rps_c10_baseline": benchfmt.metric(round(by["baseline_1w"]["rps"]), "requests/s", None,
                                                      "higher", "issue: LiteLLM defaults 60-90 requests/s"),
            "proxy_rps_c10_1worker": benchfmt.metric(round(by["shipped_1w"]["rps"]), "requests/s", 200, "higher",
                                                     baseline_rps),
            "proxy_rps_c10_2workers": benchfmt.metric(round(by["shipped_2w"]["rps"]), "requests/s", 200,
                                                      "higher", baseline_rps),
            "best_added_p50_ms": benchfmt.metric(min(added("shipped_1w"), added("shipped_2w")), "ms", 8, "lower"),
            "best_rps_c10": benchfmt.metric(round(max(by["shipped_1w"]["rps"], by["shipped_2w"]["rps"])),
                                            "requests/s", 200, "higher"),
            "added_p50_share_of_baseline": benchfmt.metric(
                round(added("shipped_1w") / added("baseline_1w"), 2), "ratio", None, "lower",
                "shipped 1 worker over the baseline, same run: holds while the machine's speed drifts"),
            "rps_c10_2workers_over_baseline": benchfmt.metric(
                round(by["shipped_2w"]["rps"] / by["baseline_1w"]["rps"], 2), "ratio", None, "higher",
                "shipped 2 workers over the baseline, same run"),
            **requestlog_metrics(by, log_rows),
            "sdk_in_process_p50_ms": benchfmt.metric(round(statistics.mean((speed_before, speed_after)), 2), "ms",
                                                     None, "lower", "LiteLLM Router.acompletion without the proxy, "
                                                     "mean of before/after: the machine's speed at the time"),
        }
        path = benchfmt.write("proxy_overhead", metrics, {
            **by, "rounds": ROUNDS, "latency_requests_per_round": LATENCY_N,
            "throughput_seconds_per_round": THROUGHPUT_S,
            "sdk_in_process_p50_ms": {"before": speed_before, "after": speed_after},
            "profile_top_frames_1_worker": top,
            "requestlog": log_rows,
            "estimate_at_issue_speed": {
                "note": "NOT measured: the shipped figures scaled by the issue's baseline midpoints (LiteLLM defaults "
                        "+14 ms, 75 requests/s) over this run's baseline",
                "added_p50_ms_1worker": round(14 * added("shipped_1w") / added("baseline_1w"), 1),
                "rps_c10_2workers": round(75 * by["shipped_2w"]["rps"] / by["baseline_1w"]["rps"]),
            },
            "environment": "LITELLM_LOCAL_MODEL_COST_MAP=True, LITELLM_LOG=WARNING, prometheus callback on",
        })
        print("\n".join(top))
        print(path)
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
