"""node_exporter for real: the command line the stack uses, scraped directly and through a real Prometheus."""
from __future__ import annotations

import shutil
import subprocess

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from llmops.dashboard.promapi import PromAPI
from llmops.stack.services import find_node_exporter, node_exporter_argv
from llmops.telemetry.host import host_summary
from tests.support.helpers import free_port, wait_for

pytestmark = pytest.mark.integration


def wait_up(condition, proc: subprocess.Popen, what: str, timeout: float = 30.0):
    """wait_for, failing early with node_exporter's output if it exits; refused connections mean "not yet"."""
    return wait_for(condition, timeout, what, poll=0.1, proc=proc, ignore=(requests.RequestException,))


def start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def node_exporter():
    """A real node_exporter on a free 127.0.0.1 port: its base URL."""
    binary = find_node_exporter()
    if not binary:
        pytest.fail("node_exporter not found (apt-get install prometheus-node-exporter: `make setup`)")
    port = free_port()
    proc = start(node_exporter_argv(binary, "127.0.0.1", port))
    url = f"http://127.0.0.1:{port}"
    wait_up(lambda: requests.get(f"{url}/metrics", timeout=2).ok, proc, "node_exporter's /metrics")
    yield url
    stop(proc)


def test_node_exporter_serves_cpu_memory_load_and_root_disk(node_exporter):
    text = requests.get(f"{node_exporter}/metrics", timeout=5).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    cpus = {s.labels["cpu"] for s in families["node_cpu_seconds"].samples if s.labels["mode"] == "idle"}
    assert len(cpus) == psutil.cpu_count()
    [available] = families["node_memory_MemAvailable_bytes"].samples
    assert 0 < available.value <= psutil.virtual_memory().total
    assert "node_load1" in families
    # `/` is reported even on an overlay root (a container), which the default exclusions drop.
    assert any(s.labels["mountpoint"] == "/" for s in families["node_filesystem_size_bytes"].samples)
    # Only the chosen collectors run, and each one succeeds.
    success = {s.labels["collector"]: s.value for s in families["node_scrape_collector_success"].samples}
    assert set(success) == {"cpu", "meminfo", "loadavg", "filesystem", "pressure"}
    assert all(success.values()), success
    assert "go_goroutines" not in families  # exporter's own Go metrics are off


def test_host_summary_reads_node_exporter_through_prometheus(node_exporter, tmp_path):
    binary = shutil.which("prometheus")
    if not binary:
        pytest.fail("prometheus not found (apt-get install prometheus: `make setup`)")
    port = free_port()
    target = node_exporter.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: node\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    proc = start([binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
                  f"--web.listen-address=127.0.0.1:{port}"])
    try:
        prom = PromAPI(f"http://127.0.0.1:{port}")
        # rate() over node_cpu_seconds_total needs two scrapes: wait until every figure is there.
        summary = wait_up(lambda: (s := host_summary(prom, fallback=dict))["source"] == "node_exporter" and s, proc,
                          "the host summary from node_exporter")
    finally:
        stop(proc)
    assert summary["memory_total_bytes"] == psutil.virtual_memory().total
    assert summary["cpu_count"] == psutil.cpu_count()
    assert 0 <= summary["cpu_utilization_ratio"] <= 1
    assert summary["disk_total_bytes"] > 0
