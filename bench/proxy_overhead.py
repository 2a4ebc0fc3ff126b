"""bench/proxy_overhead: a zero-latency fake Ollama hit directly and through the LiteLLM proxy, set up several ways.

Each row of VARIANTS is one proxy, all running side by side against the same fake: the shipped config (1 and 2
workers), the LiteLLM-defaults baseline (the same rendered config without the shipped tuning: no model_info, no
metrics list, h11 instead of httptools, no opentelemetry-sdk), and the shipped config with one setting removed at a
time, so the results show what each setting buys. The shipped config with the request log off (REQUEST_LOG=0)
gives the log's cost (issue 17: judged after the rounds on the two proxies alone, request by request at c=1 and
both loaded at once at c=10, block by block; the rounds' own figures are kept beside them), and an
embeddings row (one short input to /v1/embeddings, and the fake's
/api/embed directly) the proxy's added latency for embeddings beside the chat figure (issue 16). The machine's
speed drifts and it is shared, so the variants
are measured in interleaved rounds: at concurrency 1 (the added p50 latency, one keep-alive connection per
variant) request by request across the variants, at concurrency 10 (requests/s) in short blocks, order rotated
each round. Each figure is the median over the rounds, and each ratio is given both as the ratio of the medians
and as the median of the ratios within each round: ratios between variants measured in the same run hold,
absolute figures move with the machine.

The 1-worker proxies run under tests/support/audited_proxy.py, which counts the imports each request attempts and
fails (the "import" audit event) and can hide an installed package. After the rounds each is asked for its
failing imports per request. LiteLLM's own Router, in a plain process against the same fake, is timed before
and after, so a reader can see how fast the machine ran LiteLLM's code at the time.

To add a row, add a Variant to VARIANTS: a config edit, settings, packages to hide, a path and a body, and the
direct row its added latency is measured against. After the rounds, the request log's rows written per second are
counted with the shipped 1-worker proxy saturated, and its writer thread and callback are timed on their own.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import yaml

from bench import _report, _requestlog_cost
from bench._helpers import wait_http
from bench._overhead_figures import figures
from llmops import settings
from llmops.polling import poll_until
from llmops.proxy import config as proxyconf
from llmops.proxy import launch as proxylaunch
from llmops.proxy.key import auth_headers
from llmops.stack.ports import free_port
from tests.support.audited_proxy import failing_imports, read_snapshot

ROOT = Path(__file__).resolve().parent.parent

KEY = "sk-bench-proxy-overhead"
BODY_DIRECT = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "stream": False}
BODY_PROXY = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
HEADERS = {**auth_headers(KEY), "User-Agent": "llmops-bench/1"}
# The embeddings row: one short input, to the fake's /api/embed directly and to the proxy's /v1/embeddings.
EMBED_DIRECT = {"model": "all-minilm:22m", "input": ["hi"]}
EMBED_PROXY = {"model": "all-minilm:22m", "input": "hi"}
# Short rounds: the machine is shared (the whole run takes a few minutes).
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


def drop_model_info(data: dict) -> None:
    for deployment in data["model_list"]:
        deployment.pop("model_info", None)


def drop_metrics_config(data: dict) -> None:
    data["litellm_settings"].pop("prometheus_metrics_config", None)


def litellm_defaults(data: dict) -> None:
    drop_model_info(data)
    drop_metrics_config(data)


@dataclass(frozen=True)
class Variant:
    """One row: how its proxy is set up. `removes` names the shipped setting it lacks (what that setting buys);
    `direct` is the row (the fake hit directly) whose p50 is subtracted to give this row's added latency."""

    name: str
    note: str
    edit: Callable[[dict], None] | None = None    # a change to the rendered config
    env: dict[str, str] = field(default_factory=dict)  # settings of the proxy's own (e.g. REQUEST_LOG=0)
    hide: tuple[str, ...] = ()                   # packages the proxy cannot import (as if not installed)
    workers: int = 1
    launch: str = "audited"                      # "audited" (tests/support/audited_proxy.py), "script" (as make start), "none"
    removes: str | None = None
    path: str = "/v1/chat/completions"
    body: dict = field(default_factory=lambda: BODY_PROXY)
    direct: str = "direct"


HIDE_BOTH = ("httptools", "opentelemetry.sdk")
# Everything the hot-path settings install: hidden, LiteLLM runs as with its defaults (prisma.errors fails per request).
HIDE_ALL = (*HIDE_BOTH, "prisma")
VARIANTS = (
    Variant("direct", "the fake Ollama itself", launch="none", path="/api/chat", body=BODY_DIRECT),
    Variant("baseline_1w", "LiteLLM defaults: the rendered config without model_info and without the metrics list; "
            "httptools, opentelemetry-sdk and prisma hidden; CPython's automatic GC; 1 worker", edit=litellm_defaults,
            hide=HIDE_ALL, env={"LLMOPS_PROXY_GC": "auto"}),
    Variant("shipped_1w", "litellm_config.yaml as rendered at start, 1 worker"),
    Variant("shipped_2w", "scripts/start_litellm_proxy.sh as make start runs it, 2 workers", workers=2,
            launch="script"),
    Variant("no_metrics_config_1w", "shipped without litellm_settings.prometheus_metrics_config, 1 worker",
            edit=drop_metrics_config, removes="prometheus_metrics_config"),
    Variant("no_httptools_1w", "shipped with httptools hidden (uvicorn falls back to h11), 1 worker",
            hide=("httptools",), removes="httptools"),
    Variant("no_otel_sdk_1w", "shipped with opentelemetry-sdk hidden (the per-request OTel import fails), 1 worker",
            hide=("opentelemetry.sdk",), removes="opentelemetry-sdk"),
    Variant("no_prisma_1w", "shipped with prisma hidden (auth's per-request prisma.errors import fails), 1 worker",
            hide=("prisma",), removes="prisma"),
    # Not a speed setting: the collector thread that keeps Python 3.11's GC out of ContextVar.set (llmops.proxy.launch).
    Variant("auto_gc_1w", "shipped with CPython's automatic GC instead of the collector thread (LLMOPS_PROXY_GC=auto), "
            "1 worker", env={"LLMOPS_PROXY_GC": "auto"}, removes="gc_collector"),
    Variant("none_of_the_three_1w", "shipped without the hot-path settings (the config as shipped before issue 19: "
            "no metrics list, httptools, opentelemetry-sdk or prisma), 1 worker",
            edit=drop_metrics_config, hide=HIDE_ALL, removes="all_three"),
    # The request log (llmops.proxy.plugins.requestlog.request_log) is on in the shipped config and in every row above.
    # A feature, not a tuning setting: what it costs is reported as the requestlog_* metrics, not as buys_*.
    Variant("shipped_nolog_1w", "shipped with REQUEST_LOG=0 (the request-log callback left out of the rendered "
            "config), 1 worker", env={"REQUEST_LOG": "0"}),
    Variant("direct_embed", "the fake Ollama's /api/embed itself, one short input", launch="none",
            path="/api/embed", body=EMBED_DIRECT, direct="direct_embed"),
    Variant("shipped_embed_1w", "litellm_config.yaml as rendered at start, 1 worker, /v1/embeddings with one short "
            "input (all-minilm:22m through ollama/)", path="/v1/embeddings", body=EMBED_PROXY,
            direct="direct_embed"),
)


class Running:
    """A started variant and what was measured of it."""

    def __init__(self, spec: Variant, url: str, proc: subprocess.Popen | None, audit: Path | None,
                 db: Path | None = None):
        self.spec, self.name, self.url, self.proc, self.audit = spec, spec.name, url + spec.path, proc, audit
        self.db = db  # this proxy's own request-log file
        self.body = spec.body
        self.headers = {} if proc is None else HEADERS
        self.p50s: list[float] = []
        self.p99s: list[float] = []
        self.rps: list[float] = []
        self.errors = 0
        self.failing: dict | None = None
        self.cpu_ms: list[float] = []

    def summary(self) -> dict:
        out = {"p50_ms": statistics.median(self.p50s), "p99_ms": statistics.median(self.p99s),
               "rps": statistics.median(self.rps), "errors": self.errors,
               "p50_ms_per_round": [round(x, 2) for x in self.p50s], "rps_per_round": [round(x) for x in self.rps],
               "config": self.spec.note, "added_to": self.spec.direct}
        if self.failing is not None:
            out["failing_imports_per_request"] = self.failing
        if self.cpu_ms:
            out["cpu_ms_per_request"] = statistics.median(self.cpu_ms)
            out["cpu_ms_per_request_per_round"] = [round(x, 2) for x in self.cpu_ms]
        return out


def start(spec: Variant, fake_port: int, tmp: Path) -> Running:
    fake = f"http://127.0.0.1:{fake_port}"
    if spec.launch == "none":
        return Running(spec, fake, None, None)
    port = free_port()
    # Each proxy writes its own request log (never the project's data/requests.db, never one file for all).
    db = tmp / spec.name / "requests.db"
    environ = {"LITELLM_PORT": str(port), "OLLAMA_HOSTS": fake, "LITELLM_WORKERS": str(spec.workers),
               "LLMOPS_STATE_DIR": str(tmp / spec.name), "LLMOPS_ENV_FILE": str(tmp / "env"),
               "LITELLM_MASTER_KEY": KEY, "REQUEST_LOG_PATH": str(db), **spec.env}
    log = open(tmp / f"{spec.name}.log", "w")
    url = f"http://127.0.0.1:{port}"
    if spec.launch == "script":
        proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "start_litellm_proxy.sh")],
                                env={**os.environ, **environ}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        return Running(spec, url, proc, None, db)
    # The shipped launch's own argv and environment (llmops.proxy.launch.command), run under the import audit.
    argv, env = proxylaunch.command(settings.load(env_file=tmp / "env", environ=environ))
    if spec.edit:
        config = Path(argv[argv.index("--config") + 1])
        data = yaml.safe_load(config.read_text())
        spec.edit(data)
        edited = tmp / f"{spec.name}.yaml"
        edited.write_text(yaml.safe_dump(data, sort_keys=False))
        argv[argv.index("--config") + 1] = str(edited)
    audit = tmp / f"{spec.name}-audit.json"
    env.update(LLMOPS_IMPORT_AUDIT=str(audit), LLMOPS_HIDE_MODULES=",".join(spec.hide))
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.audited_proxy", *proxylaunch.litellm_args(argv)],
                            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Running(spec, url, proc, audit, db)


def cpu_seconds(proc: subprocess.Popen | None) -> float:
    """User + system CPU time of a proxy and its workers so far. CPU time per request hardly moves when other
    processes take the cores (wall-clock throughput does): a saturated worker serves about 1000/ms requests/s."""
    if proc is None:
        return 0.0
    try:
        root = psutil.Process(proc.pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            times = p.cpu_times()
            total += times.user + times.system
        return total
    except psutil.NoSuchProcess:
        return 0.0


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


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    fake_port = free_port()
    fake = subprocess.Popen([sys.executable, "-m", "tests.support.fakes.ollama", "--port", str(fake_port)],
                            cwd=ROOT, start_new_session=True)
    procs = [fake]
    started_at = time.monotonic()
    try:
        wait_http(f"http://127.0.0.1:{fake_port}/api/version", 90)
        shipped_models = proxyconf.render(settings.load(env_file=tmp / "env", environ={
            "OLLAMA_HOSTS": f"http://127.0.0.1:{fake_port}"}))["model_list"]
        speed_before = sdk_probe(shipped_models)
        variants = [start(spec, fake_port, tmp) for spec in VARIANTS]
        for v in variants:
            if v.proc is not None:
                procs.append(v.proc)
                wait_http(v.url.removesuffix(v.spec.path) + "/health/liveliness", timeout=240)
        for v in variants:  # warm up; concurrent requests reach every worker
            asyncio.run(latency(v.url, v.body, v.headers, 60))
            asyncio.run(throughput(v.url, v.body, v.headers, 10, 2))
        by_name = {v.name: v for v in variants}
        for r in range(ROUNDS):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            timed, cpu_ms = interleaved_with_cpu(order, LATENCY_N)
            for v in variants:
                if v.proc is not None:
                    v.cpu_ms.append(cpu_ms[v.name])
            for name, times in timed.items():
                lat = sorted(times)
                by_name[name].p50s.append(statistics.median(lat))
                by_name[name].p99s.append(lat[int(len(lat) * 0.99) - 1])
            for v in order:
                rps, errors = asyncio.run(throughput(v.url, v.body, v.headers, 10, THROUGHPUT_S))
                v.rps.append(rps)
                v.errors += errors
        for v in variants:
            if v.audit is not None:
                v.failing = audit_imports(v)
        log_rows = requestlog_saturation(by_name["shipped_1w"], tmp)
        log_rows["pair_c1"] = requestlog_pair(by_name["shipped_1w"], by_name["shipped_nolog_1w"])
        log_rows["side_by_side"] = requestlog_side_by_side(by_name["shipped_1w"], by_name["shipped_nolog_1w"])
        top = profile(by_name["shipped_1w"].proc.pid, 6, by_name["shipped_1w"].url, tmp)
        speed_after = sdk_probe(shipped_models)
        by = {v.name: v.summary() for v in variants}
        for name, r in by.items():
            imports = r.get("failing_imports_per_request", {}).get("total", "-")
            print(f"{name:22s} p50 {r['p50_ms']:.2f} ms {r['p50_ms_per_round']}  c=10 {r['rps']:.0f} req/s "
                  f"{r['rps_per_round']}  failing imports/request {imports}")
        metrics, ratios = figures(by, variants, log_rows)
        metrics["sdk_in_process_p50_ms"] = _report.metric(
            round(statistics.mean((speed_before, speed_after)), 2), "ms", None, "lower",
            "LiteLLM Router.acompletion without the proxy, mean of before/after: the machine's speed at the time")
        path = _report.write("proxy_overhead", metrics, {
            **by, "ratios": ratios, "rounds": ROUNDS, "latency_requests_per_round": LATENCY_N,
            "throughput_seconds_per_round": THROUGHPUT_S, "audit_requests": AUDIT_N,
            "wall_seconds": round(time.monotonic() - started_at),
            "sdk_in_process_p50_ms": {"before": speed_before, "after": speed_after},
            "profile_top_frames_1_worker": top,
            "requestlog": log_rows,
            "machine_shared": "yes: measured while other engineers ran tests and benchmarks on the same 2 cores. "
                              "Absolute figures are noisy; the ratios between variants measured in the same "
                              "interleaved rounds are the figures to compare.",
            "environment": "LITELLM_LOCAL_MODEL_COST_MAP=True, LITELLM_LOG=WARNING, prometheus and request-log "
                           "callbacks on (each proxy its own request-log file; shipped_nolog_1w without the log); "
                           "1-worker proxies under tests/support/audited_proxy.py (an import audit hook), the 2-worker one "
                           "as make start runs it",
            "goals": "issue 17 replaced the absolute goals (+8 ms, 200 requests/s) with ratios to the same-run "
                     "LiteLLM-defaults baseline: ≤ 0.55× its added latency (issue 19: ≤ 0.45×) and ≥ 2.5× its "
                     "throughput with 2 workers (issue 19: ≥ 3×); the absolute figures are still reported",
        })
        print("\n".join(top))
        print(path)
    except BaseException:
        report_failure(tmp, procs)
        raise
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def report_failure(tmp: Path, procs: list[subprocess.Popen]) -> None:
    """A failed run says which proxies had exited and how each log ends, before the folder is removed."""
    for proc in procs:
        if proc.poll() is not None:
            print(f"exited: pid {proc.pid} with {proc.returncode}: {' '.join(map(str, proc.args))[:160]}",
                  file=sys.stderr)
    for log in sorted(tmp.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        if any("Fatal Python error" in line or "Traceback" in line for line in lines):
            print(f"--- {log.name} (last 30 lines)", *lines[-30:], sep="\n", file=sys.stderr)


if __name__ == "__main__":
    main()
