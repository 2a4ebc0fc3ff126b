"""bench/lifecycle: warm `make start` to all-ready, `make status`, `make stop`, on ports of its own."""
from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

from bench import _report

ROOT = Path(__file__).resolve().parent.parent

RUNS = 3
ENV = {
    "LLMOPS_STATE_DIR": ".run-bench/state", "LLMOPS_LOG_DIR": ".run-bench/logs",
    "PROMETHEUS_DATA_DIR": ".run-bench/prometheus-data", "ALERTMANAGER_DATA_DIR": ".run-bench/alertmanager-data",
    "ALERT_HISTORY_PATH": ".run-bench/alerts.db", "LLMOPS_ENV_FILE": str(ROOT / ".run-bench" / "env"),
    "OLLAMA_PORT": "23434", "LITELLM_PORT": "18200", "PROMETHEUS_PORT": "19290", "DASHBOARD_PORT": "13201",
    "NODE_EXPORTER_PORT": "19300", "ALERTMANAGER_PORT": "19293", "CANARY_INTERVAL": "0",
}


def timed(env: dict, *target: str) -> tuple[float, int]:
    started = time.perf_counter()
    result = subprocess.run(["make", "-s", *target], cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):
        print(result.stdout, result.stderr)
    return elapsed, result.returncode


def main() -> None:
    env = dict(os.environ)
    env.update(ENV)
    (ROOT / ".run-bench").mkdir(exist_ok=True)
    subprocess.run(["make", "-s", "stop"], cwd=ROOT, env=env, capture_output=True)
    starts, statuses, stops = [], [], []
    for _ in range(RUNS):
        elapsed, code = timed(env, "start")
        if code != 0:
            raise SystemExit("make start failed")
        starts.append(elapsed)
        elapsed, code = timed(env, "status")
        if code != 0:
            raise SystemExit("make status says the stack is not healthy")
        statuses.append(elapsed)
        elapsed, _ = timed(env, "stop")
        stops.append(elapsed)
    metrics = {
        "start_to_ready_s": _report.metric(round(statistics.median(starts), 2), "s", 15, "lower",
                                           "LiteLLM's own start, 6-8 s, is the floor"),
        "status_s": _report.metric(round(statistics.median(statuses), 3), "s", 1, "lower"),
        "stop_s": _report.metric(round(statistics.median(stops), 2), "s", 5, "lower"),
    }
    path = _report.write("lifecycle", metrics, {"runs": RUNS, "start_s": starts, "status_s": statuses,
                                                 "stop_s": stops})
    print(path.read_text())


if __name__ == "__main__":
    main()
