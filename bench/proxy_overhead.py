"""bench/proxy_overhead: a zero-latency fake Ollama hit directly and through the LiteLLM proxy, set up several ways.

The rows are bench/_overhead_variants.py's table; the phases (interleaved rounds, import audit, the request log's
paired phases) bench/_overhead_phases.py; the metrics and goals bench/_overhead_figures.py. This module runs them.

Each row of VARIANTS is one proxy, all running side by side against the same fake: the shipped config (1 and 2
workers), the LiteLLM-defaults baseline (the same rendered config without the shipped tuning: no model_info, no
metrics list, h11 instead of httptools, no opentelemetry-sdk), and the shipped config with one setting removed at a
time, so the results show what each setting buys. The shipped config with the request log off (REQUEST_LOG=0)
gives the log's cost (judged after the rounds on the two proxies alone, request by request at c=1 and both loaded
at once at c=10, block by block; the rounds' own figures are kept beside them), and an embeddings row (one short
input to /v1/embeddings, and the fake's /api/embed directly) the proxy's added latency for embeddings beside the
chat figure. The machine's speed drifts and it is shared, so the variants
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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import _report
from bench._helpers import wait_http
from bench._overhead_figures import figures
from bench._overhead_phases import (
    AUDIT_N,
    LATENCY_N,
    ROUNDS,
    THROUGHPUT_S,
    audit_imports,
    interleaved_with_cpu,
    latency,
    profile,
    requestlog_pair,
    requestlog_saturation,
    requestlog_side_by_side,
    sdk_probe,
    throughput,
)
from bench._overhead_variants import VARIANTS, start, stop
from llmops import settings
from llmops.proxy import config as proxyconf
from llmops.stack.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


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
            "goals": "same-run ratios, regression guards: the shipped 1 worker's added p50 ≤ 0.70× LiteLLM defaults' "
                     "(at its ceiling for LiteLLM 1.108.7, 0.554-0.61× in eight runs), the shipped 2 workers' c=10 "
                     "throughput ≥ 2.5× LiteLLM defaults' (1 worker), the request log's p50 ≤ 1.03× without it, "
                     "its throughput cost ≤ 5 %, no failing import per request; absolute figures are reported "
                     "without goals",
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
