"""node_exporter for real: the command line the stack uses, scraped directly and through a real Prometheus."""
from __future__ import annotations

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from llmops.dashboard.promapi import PromAPI
from llmops.stack.services import find_node_exporter, node_exporter_argv
from llmops.telemetry.host import host_summary
from tests.support.helpers import free_port
from tests.support.processes import ManagedProcess
from tests.support.proxy import prometheus_process

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node_exporter(tmp_path_factory):
    """A real node_exporter on a free 127.0.0.1 port: its base URL."""
    binary = find_node_exporter()
    if not binary:
        pytest.fail("node_exporter not found (apt-get install prometheus-node-exporter: `make setup`)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with ManagedProcess(node_exporter_argv(binary, "127.0.0.1", port), tmp_path_factory.mktemp("node") / "node.log",
                        "node_exporter", ready=f"{url}/metrics", timeout=30, url=url):
        yield url


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
    target = node_exporter.removeprefix("http://")
    config = ("global: {scrape_interval: 1s}\n"
              f"scrape_configs:\n  - job_name: node\n    static_configs: [{{targets: ['{target}']}}]\n")
    with prometheus_process(tmp_path, config) as prom:
        api = PromAPI(prom.url)
        # rate() over node_cpu_seconds_total needs two scrapes: wait until every figure is there.
        prom.ready = lambda: (s := host_summary(api, fallback=dict))["source"] == "node_exporter" and s
        summary = prom.wait_ready(30)
    assert summary["memory_total_bytes"] == psutil.virtual_memory().total
    assert summary["cpu_count"] == psutil.cpu_count()
    assert 0 <= summary["cpu_utilization_ratio"] <= 1
    assert summary["disk_total_bytes"] > 0
