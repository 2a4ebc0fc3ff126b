"""bench/reliability: faults injected and survived, requests sent and accounted, errors seen.

Starts its own stack on bench ports, runs the fault matrix (SIGKILL, SIGSTOP/SIGCONT, a taken port, for
each of the four services), then concurrency 16 for 60 s through the proxy while 50 clients poll
/api/status, then the backend-misbehaviour tests (fake Ollama behind the real proxy) for their figures.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import _report
from llmops import settings
from llmops.stack import Stack, envfile
from tests.support import chaos

ROOT = Path(__file__).resolve().parent.parent


ENV = {
    "LLMOPS_STATE_DIR": ".run-bench/rel/state", "LLMOPS_LOG_DIR": ".run-bench/rel/logs",
    "PROMETHEUS_DATA_DIR": ".run-bench/rel/prometheus-data", "ALERTMANAGER_DATA_DIR": ".run-bench/rel/alertmanager-data",
    "ALERT_HISTORY_PATH": ".run-bench/rel/alerts.db", "LLMOPS_ENV_FILE": str(ROOT / ".run-bench/rel/env"),
    "OLLAMA_PORT": "25434", "LITELLM_PORT": "18400", "PROMETHEUS_PORT": "19490", "DASHBOARD_PORT": "13401",
    "NODE_EXPORTER_PORT": "19500", "ALERTMANAGER_PORT": "19493", "PROBE_INTERVAL": "1", "CANARY_INTERVAL": "10",
}
SERVICES = ("ollama", "litellm", "prometheus", "dashboard")


def backend_faults() -> list[dict]:
    """Run the backend-misbehaviour tests and read the figures they record."""
    artifact = ROOT / "test-artifacts" / "backend_faults.json"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_backend_faults.py"],
                   cwd=ROOT, capture_output=True, text=True, timeout=600)
    return json.loads(artifact.read_text()) if artifact.exists() else []


def main() -> None:
    os.environ.update(ENV)
    env_file = Path(ENV["LLMOPS_ENV_FILE"])
    env_file.parent.mkdir(parents=True, exist_ok=True)
    envfile.ensure(env_file)
    stack = Stack(settings.load(env_file=env_file), out=print)
    stack.start()
    try:
        runner = chaos.FaultRunner(stack, detect_within=10.0, out=print)
        outcomes = [runner.run(service, fault) for service in SERVICES for fault in chaos.FAULTS]
        with tempfile.TemporaryDirectory() as tmp:
            load = chaos.run_load(stack, Path(tmp) / "load.jsonl", seconds=60, concurrency=16, pollers=50)
        pids = [p.pid for p in chaos.stack_processes(stack)]
        ports = [s.port for s in stack.services() if s.kind == "supervised"]
    finally:
        stack.stop()
    stop_leftovers = chaos.leftovers(pids, ports)
    faults = backend_faults()
    survived = sum(o.ok for o in outcomes)
    detect = [o.detected_s for o in outcomes if o.detected_s is not None]
    metrics = {
        "faults_injected": _report.metric(len(outcomes), "faults", None, "higher"),
        "faults_survived": _report.metric(survived, "faults", len(outcomes), "higher"),
        "worst_detection_s": _report.metric(max(detect) if detect else None, "s", 10, "lower"),
        "requests_sent": _report.metric(load.requests_sent, "requests", None, "higher"),
        "requests_accounted": _report.metric(load.requests_accounted, "requests", load.requests_sent, "higher"),
        "requests_failed_under_load": _report.metric(load.requests_failed, "requests", 0, "lower"),
        "dashboard_errors_under_load": _report.metric(load.dashboard_errors, "responses", 0, "lower"),
        "dashboard_p95_ms_under_load": _report.metric(load.dashboard_p95_ms, "ms", None, "lower"),
        "max_rss_growth_mb": _report.metric(max(load.growth.values()), "MB", 150, "lower"),
        "processes_left_after_stop": _report.metric(len(stop_leftovers), "processes or ports", 0, "lower"),
        "backend_fault_cases": _report.metric(len(faults), "cases", None, "higher"),
    }
    path = _report.write("reliability", metrics, {
        "fault_matrix": [o.as_dict() for o in outcomes], "load": load.as_dict(),
        "stop_leftovers": stop_leftovers, "backend_faults": faults,
    })
    print(path.read_text())


if __name__ == "__main__":
    main()
