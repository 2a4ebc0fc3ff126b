"""A real LiteLLM proxy (scripts/start_litellm_proxy.sh) and a real Prometheus, as ManagedProcesses a test starts."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from llmops.stack import services
from tests.support.env import ROOT, test_environ
from tests.support.helpers import free_port
from tests.support.processes import ManagedProcess


def proxy_process(tmp: Path, key: str, name: str = "proxy", port: int | None = None, **env: str) -> ManagedProcess:
    """scripts/start_litellm_proxy.sh on `port` (a free one unless given) with the test stack's settings plus
    `env` (OLLAMA_HOSTS, LITELLM_CONFIG...); its state in tmp/state-NAME, its log tmp/litellm-NAME.log. Not started."""
    port = port or free_port()
    environ = test_environ()
    environ.update({"LITELLM_PORT": str(port), "LITELLM_MASTER_KEY": key,
                    "LLMOPS_STATE_DIR": str(tmp / f"state-{name}"), "LLMOPS_ENV_FILE": str(tmp / f"env-{name}"), **env})
    url = f"http://127.0.0.1:{port}"
    return ManagedProcess(["bash", str(ROOT / "scripts" / "start_litellm_proxy.sh")], tmp / f"litellm-{name}.log",
                          f"the proxy {name}", ready=f"{url}/health/liveliness", env=environ, timeout=120, url=url,
                          port=port)


@contextmanager
def real_proxy(tmp: Path, key: str, **env: str):
    """The proxy on a free port with the test stack's settings plus `env`, running for the block; yields its URL."""
    with proxy_process(tmp, key, **env) as proxy:
        yield proxy.url


def prometheus_binary() -> str:
    """The Prometheus the stack runs (llmops.stack.services); missing, the test fails saying what installs it."""
    binary = services.prometheus_binary()
    if not binary:
        pytest.fail("prometheus not found on PATH (`make setup` installs it: apt-get install prometheus)")
    return binary


def prometheus_process(tmp: Path, config: str, port: int | None = None, ready: str = "/-/ready") -> ManagedProcess:
    """The real Prometheus with `config` (prometheus.yml's text) on `port` (a free one unless given), its data in
    tmp/tsdb and its log tmp/prometheus.log, ready when `ready` answers 200 (the same port and data on a restart).
    Not started."""
    port = port or free_port()
    (tmp / "prometheus.yml").write_text(config)
    url = f"http://127.0.0.1:{port}"
    return ManagedProcess([prometheus_binary(), f"--config.file={tmp / 'prometheus.yml'}",
                           f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                          tmp / "prometheus.log", "Prometheus", ready=f"{url}{ready}", url=url, port=port)


@contextmanager
def real_prometheus(tmp: Path, proxy_url: str, key: str):
    """Prometheus scraping the proxy's /metrics/ every second with the key; yields its URL once it has scraped."""
    config = ("global: {scrape_interval: 1s}\n"
              "scrape_configs:\n  - job_name: litellm\n    metrics_path: /metrics/\n"
              f"    authorization: {{credentials: {key}}}\n"
              f"    static_configs: [{{targets: ['{proxy_url.removeprefix('http://')}']}}]\n")
    with prometheus_process(tmp, config) as prom:
        prom.ready = lambda: _scraped(prom.url)
        prom.wait_ready(60)
        yield prom.url


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
