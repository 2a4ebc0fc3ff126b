"""Host telemetry: stack process usage with real process trees, host summary from Prometheus or psutil."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import psutil
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llmops.dashboard.promapi import MetricsUnavailable
from llmops.stack.services import node_exporter_argv
from llmops.telemetry.host import (
    HOST_QUERIES,
    ProcessCollector,
    ProcessSampler,
    _CpuDelta,
    host_summary,
    psutil_host_summary,
)
from tests.support.fakes.prom import FakeProm
from tests.support.helpers import wait_for

# The parent starts a child that burns 0.35 s of CPU, then both wait on stdin (closed by the test). The test
# waits for 0.3 s: /proc counts CPU in clock ticks, which can trail the child's own precise clock.
TREE = r"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", '''
import sys, time
while time.process_time() < 0.35:
    pass
sys.stdin.read()
'''], stdin=subprocess.PIPE)
print(child.pid, flush=True)
sys.stdin.read()
child.stdin.close()
child.wait()
"""


@pytest.fixture
def tree():
    """A running parent with one CPU-burning child: (parent pid, child pid)."""
    parent = subprocess.Popen([sys.executable, "-c", TREE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    yield parent.pid, child_pid
    parent.stdin.close()
    try:
        parent.wait(timeout=10)
    except subprocess.TimeoutExpired:
        parent.kill()
        parent.wait()


def test_service_usage_includes_its_children(tree):
    parent_pid, child_pid = tree
    sampler = ProcessSampler()
    first = sampler.sample({"litellm": parent_pid})["litellm"]
    assert first["status"] == "running" and first["processes"] == 2
    assert first["cpu_percent"] is None  # no baseline yet
    own = psutil.Process(parent_pid).memory_info().rss + psutil.Process(child_pid).memory_info().rss
    assert first["rss_bytes"] == pytest.approx(own, rel=0.2)
    assert first["rss_bytes"] > psutil.Process(parent_pid).memory_info().rss
    # The child's burnt CPU shows in the service's CPU time and, sampled across the burn, in its CPU%.
    later = wait_for(lambda: (s := sampler.sample({"litellm": parent_pid})["litellm"])["cpu_seconds"] >= 0.3 and s,
                     20, "the child's CPU time to reach 0.3 s", poll=0.05)
    assert later["cpu_percent"] > 0


def test_stopped_and_vanished_services_are_statuses_not_errors(tree):
    parent_pid, _ = tree
    gone = psutil.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    result = ProcessSampler().sample({"proxy": parent_pid, "node": None, "ollama": gone.pid})
    assert result["proxy"]["status"] == "running"
    assert result["node"] == {"pid": None, "status": "stopped", "rss_bytes": None, "cpu_percent": None,
                              "cpu_seconds": None, "processes": 0}
    assert result["ollama"]["status"] == "gone" and result["ollama"]["rss_bytes"] is None


def test_access_denied_is_reported():
    class Denied:
        def __init__(self, pid):
            raise psutil.AccessDenied(pid)

    assert ProcessSampler(process_factory=Denied).sample({"prometheus": 1})["prometheus"]["status"] == "access denied"


def test_process_collector_exports_memory_and_cpu_per_service(tree):
    parent_pid, _ = tree
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessCollector(lambda: {"litellm": parent_pid, "node": None}))
    text = generate_latest(registry).decode()
    samples = {(s.name, tuple(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("llmops_service_resident_memory_bytes", (("service", "litellm"),))] > 1_000_000
    assert samples[("llmops_service_cpu_seconds_total", (("service", "litellm"),))] >= 0
    assert samples[("llmops_service_processes", (("service", "litellm"),))] == 2
    assert samples[("llmops_service_processes", (("service", "node"),))] == 0
    assert ("llmops_service_resident_memory_bytes", (("service", "node"),)) not in samples


NODE = {
    "cpu_utilization_ratio": 0.25, "cpu_count": 8.0, "memory_total_bytes": 16e9, "memory_available_bytes": 4e9,
    "load1": 1.5, "load5": 1.0, "load15": 0.5, "disk_total_bytes": 500e9, "disk_free_bytes": 100e9,
}
LOCAL = {key: -1.0 for key in NODE}


def test_summary_from_node_exporter_through_prometheus():
    prom = FakeProm({HOST_QUERIES[key]: value for key, value in NODE.items()})
    summary = host_summary(prom, fallback=lambda: pytest.fail("psutil must not be needed"))
    assert summary["source"] == "node_exporter" and summary["detail"] == ""
    assert {key: summary[key] for key in NODE} == NODE
    assert summary["memory_used_ratio"] == pytest.approx(0.75)
    assert prom.asked == list(HOST_QUERIES.values())


def test_summary_falls_back_to_psutil_when_prometheus_is_down():
    prom = FakeProm(error=MetricsUnavailable("metrics unavailable: Prometheus at http://127.0.0.1:1 unreachable"))
    summary = host_summary(prom, fallback=lambda: dict(LOCAL))
    assert summary["source"] == "psutil"
    assert "unreachable" in summary["detail"]
    assert {key: summary[key] for key in NODE} == LOCAL
    assert len(prom.asked) == 1  # a down Prometheus is asked once, not once per figure


def test_summary_fills_what_node_exporter_lacks_from_psutil():
    values = {HOST_QUERIES[key]: value for key, value in NODE.items() if not key.startswith("disk")}
    summary = host_summary(FakeProm(values), fallback=lambda: dict(LOCAL))
    assert summary["source"] == "mixed"
    assert summary["load1"] == 1.5 and summary["disk_total_bytes"] == -1.0
    assert summary["detail"] == "node_exporter has no data for: disk_total_bytes, disk_free_bytes"


def test_psutil_summary_reads_this_host():
    summary = host_summary(None)
    assert summary["source"] == "psutil" and summary["detail"] == "Prometheus not configured"
    assert summary["memory_total_bytes"] == psutil.virtual_memory().total
    assert 0 < summary["memory_used_ratio"] < 1
    assert summary["cpu_count"] == psutil.cpu_count()
    assert summary["disk_total_bytes"] > 0 and summary["load1"] >= 0
    assert set(psutil_host_summary()) == set(HOST_QUERIES)


def test_cpu_utilisation_needs_two_readings_then_is_a_ratio():
    delta = _CpuDelta()
    assert delta.ratio() is None
    start = sum(psutil.cpu_times())
    wait_for(lambda: sum(psutil.cpu_times()) > start + 0.05, 20, "the CPU counters to move", poll=0.05)
    assert 0.0 <= delta.ratio() <= 1.0


def test_host_queries_are_valid_promql(tmp_path):
    promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not promtool:
        pytest.fail("promtool not found on PATH (install Prometheus: `make setup`)")
    rules = "groups:\n  - name: host_queries\n    rules:\n" + "".join(
        f"      - record: llmops:host_{key}\n        expr: '{expr}'\n" for key, expr in HOST_QUERIES.items()
    )
    (tmp_path / "q.rules.yml").write_text(rules)
    result = subprocess.run([promtool, "check", "rules", str(tmp_path / "q.rules.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_node_exporter_command_binds_where_told_with_few_collectors():
    argv = node_exporter_argv("/usr/bin/prometheus-node-exporter", "127.0.0.1", 19100)
    assert argv[0] == "/usr/bin/prometheus-node-exporter"
    assert "--web.listen-address=127.0.0.1:19100" in argv
    assert "--collector.disable-defaults" in argv
    assert {"--collector.cpu", "--collector.meminfo", "--collector.loadavg", "--collector.filesystem"} <= set(argv)
