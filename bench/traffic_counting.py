"""Benchmark: what the exact request counts (llmops/proxy/counts.py) cost Prometheus, against the rate()/increase() queries.

Run: .venv/bin/python -m bench.traffic_counting [--series 60] [--hours 24] [--repeats 15]
Backfills a TSDB (promtool tsdb create-blocks-from openmetrics) with `series` request counters scraped
every 10 s for `hours`, a third of them born part-way, starts the real Prometheus on it, and times the
old and the new queries side by side (interleaved, median of `repeats`): the traffic probe's 5m count
and the requests chart over 1h and 24h. Also records how far the old query is from the true count.
"""
from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import _report
from llmops.dashboard import charts
from llmops.polling import poll_until
from llmops.proxy import counts
from llmops.stack.ports import free_port
from llmops.stack.services import prometheus_binary

ROOT = Path(__file__).resolve().parent.parent

SCRAPE = 10


def openmetrics(series: int, hours: float, end: int, seed: int = 1) -> tuple[str, float]:
    """The counters as OpenMetrics text, and the true number of requests in the last 5 minutes."""
    rng = random.Random(seed)
    steps = int(hours * 3600 // SCRAPE)
    codes = ["200"] * 6 + ["400", "429", "500", "408"]
    labels, born, values = [], [], [0] * series
    for i in range(series):
        labels.append(f'route="/v1/chat/completions",status_code="{codes[i % len(codes)]}",'
                      f'user_agent="bench-{i}/1",requested_model="smollm2:135m",api_key_alias="None"')
        # A third are born part-way; one in ten in the last 3 minutes, where increase() misses them.
        born.append(steps - 1 - rng.randrange(18) if i % 10 == 0 else 0 if i % 3 else rng.randrange(steps))
    lines = ["# TYPE litellm_proxy_total_requests_metric counter"]
    truth = 0.0
    start = end - steps * SCRAPE
    for k in range(steps + 1):
        t = start + k * SCRAPE
        for i in range(series):
            if k < born[i]:
                continue
            grown = rng.randrange(3) if k > born[i] else 1 + rng.randrange(3)  # a new series starts above zero
            values[i] += grown
            if t > end - 300:
                truth += grown
            lines.append(f"litellm_proxy_total_requests_metric_total{{{labels[i]}}} {values[i]} {t}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n", truth


def timed(prom: str, path: str, params: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    body = requests.get(f"{prom}{path}", params=params, timeout=120).json()
    elapsed = (time.perf_counter() - started) * 1000.0
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {body.get('error')}: {params['query'][:200]}")
    return elapsed, body["data"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=60)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    binary = prometheus_binary()
    if not binary:
        print("prometheus not found on PATH", file=sys.stderr)
        return 2
    end = (int(time.time()) - 3 * 3600) // SCRAPE * SCRAPE  # behind the head block: backfilled blocks only
    with tempfile.TemporaryDirectory() as tmp:
        text, truth = openmetrics(args.series, args.hours, end)
        source = Path(tmp) / "data.om"
        source.write_text(text)
        subprocess.run([str(Path(binary).with_name("promtool")), "tsdb", "create-blocks-from", "openmetrics",
                        str(source), str(Path(tmp) / "tsdb")], check=True, capture_output=True)
        (Path(tmp) / "prometheus.yml").write_text("global: {scrape_interval: 10s}\n")
        port = free_port()
        proc = subprocess.Popen([binary, f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={tmp}/tsdb",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        prom = f"http://127.0.0.1:{port}"
        try:
            def ready() -> bool:
                try:
                    return requests.get(f"{prom}/-/ready", timeout=2).status_code == 200
                except requests.RequestException:
                    return False

            if not poll_until(ready, 60):
                raise SystemExit("Prometheus did not become ready within 60 s")
            old_count = f"sum(increase({counts.TOTAL}{{{counts.REAL}}}[5m]))"
            new_count = counts.count_expr("5m")
            cases = {"count_5m": [("/api/v1/query", {"query": old_count, "time": end}),
                                  ("/api/v1/query", {"query": new_count, "time": end})]}
            for window in ("1h", "24h"):
                start, stop, step, rate = charts.window_params(window, end)
                old = f"sum by (status_code) (rate({counts.TOTAL}{{{counts.REAL}}}[{rate}]))"
                lo, hi = charts.aligned(start, stop, step)
                cases[f"chart_{window}"] = [
                    ("/api/v1/query_range", {"query": old, "start": start, "end": stop, "step": step}),
                    ("/api/v1/query_range", {"query": charts.requests_expr(step), "start": lo, "end": hi, "step": step})]
            times = {name: ([], []) for name in cases}
            for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
                for name, pair in cases.items():
                    for which, (path, params) in enumerate(pair):
                        times[name][which].append(timed(prom, path, params)[0])
            _, old_data = timed(prom, "/api/v1/query", {"query": old_count, "time": end})
            _, new_data = timed(prom, "/api/v1/query", {"query": f"sum({new_count})", "time": end})
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    metrics = {}
    for name, (old_ms, new_ms) in times.items():
        old_median, new_median = statistics.median(old_ms), statistics.median(new_ms)
        metrics[f"{name}_rate_ms"] = _report.metric(round(old_median, 2), "ms")
        metrics[f"{name}_exact_ms"] = _report.metric(round(new_median, 2), "ms", baseline=f"{name}_rate_ms")
        metrics[f"{name}_ratio"] = _report.metric(round(new_median / old_median, 2), "x")
    old_value = float(old_data["result"][0]["value"][1])
    new_value = float(new_data["result"][0]["value"][1])
    metrics["true_requests_5m"] = _report.metric(truth, "requests", better="higher")
    metrics["increase_5m_result"] = _report.metric(round(old_value, 2), "requests", better="higher")
    metrics["exact_5m_result"] = _report.metric(new_value, "requests", better="higher")
    _report.report("traffic_counting", metrics, {
        "series": args.series, "hours": args.hours, "repeats": args.repeats, "scrape_interval_s": SCRAPE,
        "note": "shared 2-core machine: compare the ratios, measured side by side, not the absolute figures"},
        width=28)
    return 0


if __name__ == "__main__":
    sys.exit(main())
