"""bench/proxy_overhead's variants table: each row one proxy set up its own way, how it starts, and what was
measured of it (a helper, not a benchmark: bench.sh skips _*.py). To add a row, add a Variant to VARIANTS."""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from llmops import settings
from llmops.proxy import launch as proxylaunch
from llmops.proxy.key import auth_headers
from llmops.stack.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


KEY = "sk-bench-proxy-overhead"
BODY_DIRECT = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "stream": False}
BODY_PROXY = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
HEADERS = {**auth_headers(KEY), "User-Agent": "llmops-bench/1"}
# The embeddings row: one short input, to the fake's /api/embed directly and to the proxy's /v1/embeddings.
EMBED_DIRECT = {"model": "all-minilm:22m", "input": ["hi"]}
EMBED_PROXY = {"model": "all-minilm:22m", "input": "hi"}
# Short rounds: the machine is shared (the whole run takes a few minutes).

def drop_model_info(data: dict) -> None:
    for deployment in data["model_list"]:
        deployment.pop("model_info", None)


def drop_metrics_config(data: dict) -> None:
    data["litellm_settings"].pop("prometheus_metrics_config", None)


def litellm_defaults(data: dict) -> None:
    drop_model_info(data)
    drop_metrics_config(data)


@dataclass(frozen=True)
class Variant:
    """One row: how its proxy is set up. `removes` names the shipped setting it lacks (what that setting buys);
    `direct` is the row (the fake hit directly) whose p50 is subtracted to give this row's added latency."""

    name: str
    note: str
    edit: Callable[[dict], None] | None = None    # a change to the rendered config
    env: dict[str, str] = field(default_factory=dict)  # settings of the proxy's own (e.g. REQUEST_LOG=0)
    hide: tuple[str, ...] = ()                   # packages the proxy cannot import (as if not installed)
    workers: int = 1
    launch: str = "audited"                      # "audited" (tests/support/audited_proxy.py), "script" (as make start), "none"
    removes: str | None = None
    path: str = "/v1/chat/completions"
    body: dict = field(default_factory=lambda: BODY_PROXY)
    direct: str = "direct"


HIDE_BOTH = ("httptools", "opentelemetry.sdk")
# Everything the hot-path settings install: hidden, LiteLLM runs as with its defaults (prisma.errors fails per request).
HIDE_ALL = (*HIDE_BOTH, "prisma")
VARIANTS = (
    Variant("direct", "the fake Ollama itself", launch="none", path="/api/chat", body=BODY_DIRECT),
    Variant("baseline_1w", "LiteLLM defaults: the rendered config without model_info and without the metrics list; "
            "httptools, opentelemetry-sdk and prisma hidden; CPython's automatic GC; 1 worker", edit=litellm_defaults,
            hide=HIDE_ALL, env={"LLMOPS_PROXY_GC": "auto"}),
    Variant("shipped_1w", "litellm_config.yaml as rendered at start, 1 worker"),
    Variant("shipped_2w", "scripts/start_litellm_proxy.sh as make start runs it, 2 workers", workers=2,
            launch="script"),
    Variant("no_metrics_config_1w", "shipped without litellm_settings.prometheus_metrics_config, 1 worker",
            edit=drop_metrics_config, removes="prometheus_metrics_config"),
    Variant("no_httptools_1w", "shipped with httptools hidden (uvicorn falls back to h11), 1 worker",
            hide=("httptools",), removes="httptools"),
    Variant("no_otel_sdk_1w", "shipped with opentelemetry-sdk hidden (the per-request OTel import fails), 1 worker",
            hide=("opentelemetry.sdk",), removes="opentelemetry-sdk"),
    Variant("no_prisma_1w", "shipped with prisma hidden (auth's per-request prisma.errors import fails), 1 worker",
            hide=("prisma",), removes="prisma"),
    # Not a speed setting: the collector thread that keeps Python 3.11's GC out of ContextVar.set (llmops.proxy.launch).
    Variant("auto_gc_1w", "shipped with CPython's automatic GC instead of the collector thread (LLMOPS_PROXY_GC=auto), "
            "1 worker", env={"LLMOPS_PROXY_GC": "auto"}, removes="gc_collector"),
    Variant("none_of_the_three_1w", "shipped without the hot-path settings (the config as shipped before them: "
            "no metrics list, httptools, opentelemetry-sdk or prisma), 1 worker",
            edit=drop_metrics_config, hide=HIDE_ALL, removes="all_three"),
    # The request log (llmops.proxy.plugins.requestlog.request_log) is on in the shipped config and in every row above.
    # A feature, not a tuning setting: what it costs is reported as the requestlog_* metrics, not as buys_*.
    Variant("shipped_nolog_1w", "shipped with REQUEST_LOG=0 (the request-log callback left out of the rendered "
            "config), 1 worker", env={"REQUEST_LOG": "0"}),
    Variant("direct_embed", "the fake Ollama's /api/embed itself, one short input", launch="none",
            path="/api/embed", body=EMBED_DIRECT, direct="direct_embed"),
    Variant("shipped_embed_1w", "litellm_config.yaml as rendered at start, 1 worker, /v1/embeddings with one short "
            "input (all-minilm:22m through ollama/)", path="/v1/embeddings", body=EMBED_PROXY,
            direct="direct_embed"),
)


class Running:
    """A started variant and what was measured of it."""

    def __init__(self, spec: Variant, url: str, proc: subprocess.Popen | None, audit: Path | None,
                 db: Path | None = None):
        self.spec, self.name, self.url, self.proc, self.audit = spec, spec.name, url + spec.path, proc, audit
        self.db = db  # this proxy's own request-log file
        self.body = spec.body
        self.headers = {} if proc is None else HEADERS
        self.p50s: list[float] = []
        self.p99s: list[float] = []
        self.rps: list[float] = []
        self.errors = 0
        self.failing: dict | None = None
        self.cpu_ms: list[float] = []

    def summary(self) -> dict:
        out = {"p50_ms": statistics.median(self.p50s), "p99_ms": statistics.median(self.p99s),
               "rps": statistics.median(self.rps), "errors": self.errors,
               "p50_ms_per_round": [round(x, 2) for x in self.p50s], "rps_per_round": [round(x) for x in self.rps],
               "config": self.spec.note, "added_to": self.spec.direct}
        if self.failing is not None:
            out["failing_imports_per_request"] = self.failing
        if self.cpu_ms:
            out["cpu_ms_per_request"] = statistics.median(self.cpu_ms)
            out["cpu_ms_per_request_per_round"] = [round(x, 2) for x in self.cpu_ms]
        return out


def start(spec: Variant, fake_port: int, tmp: Path) -> Running:
    fake = f"http://127.0.0.1:{fake_port}"
    if spec.launch == "none":
        return Running(spec, fake, None, None)
    port = free_port()
    # Each proxy writes its own request log (never the project's data/requests.db, never one file for all).
    db = tmp / spec.name / "requests.db"
    environ = {"LITELLM_PORT": str(port), "OLLAMA_HOSTS": fake, "LITELLM_WORKERS": str(spec.workers),
               "LLMOPS_STATE_DIR": str(tmp / spec.name), "LLMOPS_ENV_FILE": str(tmp / "env"),
               "LITELLM_MASTER_KEY": KEY, "REQUEST_LOG_PATH": str(db), **spec.env}
    log = open(tmp / f"{spec.name}.log", "w")
    url = f"http://127.0.0.1:{port}"
    if spec.launch == "script":
        proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "start_litellm_proxy.sh")],
                                env={**os.environ, **environ}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        return Running(spec, url, proc, None, db)
    # The shipped launch's own argv and environment (llmops.proxy.launch.command), run under the import audit.
    argv, env = proxylaunch.command(settings.load(env_file=tmp / "env", environ=environ))
    if spec.edit:
        config = Path(argv[argv.index("--config") + 1])
        data = yaml.safe_load(config.read_text())
        spec.edit(data)
        edited = tmp / f"{spec.name}.yaml"
        edited.write_text(yaml.safe_dump(data, sort_keys=False))
        argv[argv.index("--config") + 1] = str(edited)
    audit = tmp / f"{spec.name}-audit.json"
    env.update(LLMOPS_IMPORT_AUDIT=str(audit), LLMOPS_HIDE_MODULES=",".join(spec.hide))
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.audited_proxy", *proxylaunch.litellm_args(argv)],
                            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Running(spec, url, proc, audit, db)


def cpu_seconds(proc: subprocess.Popen | None) -> float:
    """User + system CPU time of a proxy and its workers so far. CPU time per request hardly moves when other
    processes take the cores (wall-clock throughput does): a saturated worker serves about 1000/ms requests/s."""
    if proc is None:
        return 0.0
    try:
        root = psutil.Process(proc.pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            times = p.cpu_times()
            total += times.user + times.system
        return total
    except psutil.NoSuchProcess:
        return 0.0


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass

