"""The stack's services: what runs in each slot, where it listens and how to tell it is ready."""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from urllib.parse import urlparse

from ..health import REDIS_PING, ReadyCheck
from ..proxy.config import redis_needed
from ..render import alertmanager_config as amconfig
from ..settings import ROOT, Settings

# Debian names it prometheus-node-exporter; upstream tarballs node_exporter.
NODE_EXPORTER_NAMES = ("prometheus-node-exporter", "node_exporter")
# The default exclude list minus `overlay`, so that / inside a container is reported too.
_FS_TYPES_EXCLUDE = (
    "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue"
    "|nsfs|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$"
)
NODE_EXPORTER_COLLECTORS = ("cpu", "meminfo", "loadavg", "filesystem", "pressure")


def find_node_exporter() -> str | None:
    """The node_exporter binary on PATH, or None."""
    for name in NODE_EXPORTER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def node_exporter_argv(binary: str, host: str, port: int) -> list[str]:
    """node_exporter with only the collectors the dashboard and the rules read."""
    return [
        binary,
        f"--web.listen-address={host}:{port}",
        "--web.disable-exporter-metrics",
        "--collector.disable-defaults",
        *(f"--collector.{name}" for name in NODE_EXPORTER_COLLECTORS),
        f"--collector.filesystem.fs-types-exclude={_FS_TYPES_EXCLUDE}",
        "--log.level=warn",
    ]


@dataclass
class Service:
    """One supervised program (or an external one we only watch)."""

    name: str
    host: str
    port: int
    command: list[str] = field(default_factory=list)
    checks: list[ReadyCheck] = field(default_factory=list)
    kind: str = "supervised"  # supervised | external | missing
    optional: bool = False
    ready_timeout: float = 60.0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"http://{host}:{self.port}"


def python() -> str:
    """The interpreter of the project's venv (supervisor's programs do not have the venv on PATH)."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv if venv.exists() else sys.executable)


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def node_exporter_binary() -> str | None:
    return find_node_exporter()


def embedded_threads(count: int, cpus: int | None = None) -> int | None:
    """llama.cpp threads per embedded backend when `count` share the machine; None keeps llama.cpp's default.

    llama.cpp defaults to cpu_count // 2 threads per process, so N backends would start N x cores/2
    threads; its threads spin at every layer's barrier, and an oversubscribed core stalls them all.
    """
    if count <= 1:
        return None
    return max(1, (cpus or os.cpu_count() or 1) // count)


def backend_services(settings: Settings, ollama_mode: str) -> list[Service]:
    """The Ollama slot(s): one service per local backend; remote hosts are watched only."""
    services = []
    threads = embedded_threads(len(settings.backend_urls))
    for index, url in enumerate(settings.backend_urls):
        parsed = urlparse(url)
        name = "ollama" if index == 0 else f"ollama-{index + 1}"
        local = parsed.hostname in ("127.0.0.1", "localhost", settings.bind_host)
        kind = "supervised" if local and not settings.ollama_hosts and ollama_mode != "external" else "external"
        if ollama_mode == "ollama" and kind == "supervised":
            command = [shutil.which("ollama") or "ollama", "serve"]
            # The same parallel setting for a real Ollama as for the embedded backend: the proxy's queue reads one.
            env = {"OLLAMA_HOST": f"{parsed.hostname}:{parsed.port}",
                   "OLLAMA_NUM_PARALLEL": str(settings.backend_num_parallel)}
        else:
            command = [python(), str(ROOT / "scripts" / "embedded_backend.py"),
                       "--host", settings.bind_host, "--port", str(parsed.port)]
            if threads:
                command += ["--threads", str(threads)]
            env = {}
        services.append(Service(
            name=name, host=parsed.hostname or "127.0.0.1", port=parsed.port or 11434, command=command,
            checks=[ReadyCheck("/api/version")], kind=kind, ready_timeout=60.0, env=env,
        ))
    return services


def redis_argv(binary: str, port: int, data_dir: str) -> list[str]:
    """The queue's Redis: 127.0.0.1 only (whatever BIND_HOST says: only the proxy uses it), nothing written to disk."""
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", data_dir, "--loglevel", "warning"]


def all_services(settings: Settings, ollama_mode: str) -> list[Service]:
    """Every service of the stack, in start order."""
    host = settings.bind_host
    state = settings.state_dir
    services = backend_services(settings, ollama_mode)
    if redis_needed(settings):  # before the proxy, whose workers share the queue through it
        redis = shutil.which("redis-server")
        services.append(Service(
            name="redis", host="127.0.0.1", port=settings.redis_port,
            command=redis_argv(redis or "redis-server", settings.redis_port, str(state)),
            checks=[ReadyCheck(REDIS_PING)], kind="supervised" if redis else "missing", ready_timeout=15.0,
        ))
    services.append(Service(
        name="litellm", host=host, port=settings.litellm_port,
        command=["bash", str(ROOT / "scripts" / "start_litellm_proxy.sh")],
        checks=[ReadyCheck("/health/liveliness"), ReadyCheck("/v1/models", with_key=True, needs_models=True)],
        ready_timeout=120.0,
    ))
    prom = prometheus_binary()
    services.append(Service(
        name="prometheus", host=host, port=settings.prometheus_port,
        command=[
            prom or "prometheus",
            f"--config.file={state / 'prometheus.yml'}",
            f"--storage.tsdb.path={settings.prometheus_data_dir}",
            f"--web.listen-address={host}:{settings.prometheus_port}",
            "--storage.tsdb.retention.time=15d",
        ],
        checks=[ReadyCheck("/-/ready")], kind="supervised" if prom else "missing", ready_timeout=30.0,
    ))
    if settings.alertmanager_enabled:  # after Prometheus, which sends it the firing alerts
        am = amconfig.binary()
        services.append(Service(
            name="alertmanager", host=host, port=settings.alertmanager_port,
            command=amconfig.argv(settings, am or "prometheus-alertmanager"),
            checks=[ReadyCheck("/-/ready")], kind="supervised" if am else "missing", ready_timeout=30.0,
        ))
    services.append(Service(
        name="dashboard", host=host, port=settings.dashboard_port,
        command=[python(), str(ROOT / "scripts" / "dashboard_server.py")],
        checks=[ReadyCheck("/healthz")], ready_timeout=30.0,
    ))
    node = node_exporter_binary()
    services.append(Service(
        name="node_exporter", host=host, port=settings.node_exporter_port,
        command=node_exporter_argv(node or "prometheus-node-exporter", host, settings.node_exporter_port),
        checks=[ReadyCheck("/metrics")], kind="supervised" if node else "missing", optional=True, ready_timeout=15.0,
    ))
    return services
