"""node_exporter for real: the command line the stack uses, scraped directly and through a real Prometheus."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from llmops.dashboard.promapi import PromAPI
from llmops.stack.services import find_node_exporter, node_exporter_argv
from llmops.telemetry.host import host_summary

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, proc: subprocess.Popen, timeout: float = 30.0, interval: float = 0.1):
    """The first truthy value of condition(); fails early, with its output, if proc exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited {proc.returncode}: {proc.stdout.read()}")
        try:
            value = condition()
        except requests.RequestException:
            value = None
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s")


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
    wait_for(lambda: requests.get(f"{url}/metrics", timeout=2).ok, proc)
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
        summary = wait_for(lambda: (s := host_summary(prom, fallback=dict))["source"] == "node_exporter" and s, proc)
    finally:
        stop(proc)
    assert summary["memory_total_bytes"] == psutil.virtual_memory().total
    assert summary["cpu_count"] == psutil.cpu_count()
    assert 0 <= summary["cpu_utilization_ratio"] <= 1
    assert summary["disk_total_bytes"] > 0
