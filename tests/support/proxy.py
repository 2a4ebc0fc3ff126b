"""A real LiteLLM proxy (scripts/start_litellm_proxy.sh) and a real Prometheus scraping it, started by a test."""
from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.support.env import ROOT, test_environ
from tests.support.helpers import free_port, wait_for, wait_http_ok


@contextmanager
def real_proxy(tmp: Path, key: str, **env: str):
    """The proxy on a free port with the test stack's settings plus `env` (OLLAMA_HOSTS, LITELLM_CONFIG...)."""
    port = free_port()
    environ = test_environ()
    environ.update({"LITELLM_PORT": str(port), "LITELLM_MASTER_KEY": key,
                    "LLMOPS_STATE_DIR": str(tmp / "state"), "LLMOPS_ENV_FILE": str(tmp / "env"), **env})
    log_path = tmp / "litellm.log"
    log = open(log_path, "w")  # noqa: SIM115 - the child keeps its own copy of the fd
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "start_litellm_proxy.sh")], env=environ,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/health/liveliness", 120, "the proxy to start", proc, log_path)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


@contextmanager
def real_prometheus(tmp: Path, proxy_url: str, key: str):
    """Prometheus scraping the proxy's /metrics/ every second with the key; yields its URL."""
    binary = shutil.which("prometheus")
    if not binary:
        pytest.fail("prometheus not found (apt-get install prometheus: `make setup`)")
    port = free_port()
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n  - job_name: litellm\n    metrics_path: /metrics/\n"
        f"    authorization: {{credentials: {key}}}\n"
        f"    static_configs: [{{targets: ['{proxy_url.removeprefix('http://')}']}}]\n")
    proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _scraped(url), 60, "Prometheus to scrape the proxy")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _scraped(url: str) -> bool:
    try:
        return prom_sum(url, 'up{job="litellm"}') == 1.0
    except requests.RequestException:
        return False


def prom_sum(url: str, query: str) -> float | None:
    """The sum of an instant query's values, or None when it returns nothing."""
    result = requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]
    return sum(float(r["value"][1]) for r in result) if result else None


def prom_series(url: str, query: str) -> list[dict]:
    return requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]
