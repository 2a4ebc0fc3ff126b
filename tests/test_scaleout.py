"""Scale-out: three backends behind one proxy, each in its own network namespace; one dies under traffic.

The backends are real embedded backends (llama.cpp), each inside `ip netns` behind a veth pair, so the
proxy and the dashboard reach them across a real network hop (10.213.N.2). The stack runs through the
CLI on ports of its own with OLLAMA_HOSTS naming the three addresses.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.env import ROOT, test_environ
from tests.support.helpers import wait_for

pytestmark = pytest.mark.integration

HOSTS = 3
PORT = 24434
PREFIX = "llmops-t-b"  # namespaces llmops-t-b1..3; veths lt-bNh (host) / lt-bNn (namespace)
PORTS = {"OLLAMA_PORT": str(PORT), "LITELLM_PORT": "18300", "PROMETHEUS_PORT": "19390",
         "DASHBOARD_PORT": "13301", "NODE_EXPORTER_PORT": "19400", "ALERTMANAGER_PORT": "19397"}
VICTIM = 2  # the host that is killed
SETTLE_S = 10.0  # after the kill: cut streams fail until the proxy's health check (every 10 s) marks the host
AFTER_MAX_ERROR_RATIO = 0.02  # after SETTLE_S, retries must route around the dead host
DURING_MAX_ERROR_RATIO = 0.5  # while it settles, failures are the streams cut mid-way, not half the traffic
TRAFFIC_S = 95.0
CONCURRENCY = 6


def address(n: int) -> str:
    return f"10.213.{n}.2"


def url(n: int) -> str:
    return f"http://{address(n)}:{PORT}"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


def remove_namespaces() -> None:
    """Delete the namespaces and host-side veths (deleting a namespace also deletes its veth pair)."""
    for n in range(1, HOSTS + 1):
        ip("netns", "del", f"{PREFIX}{n}", check=False)
        ip("link", "del", f"lt-b{n}h", check=False)


def create_namespace(n: int) -> None:
    ns, host_end, ns_end = f"{PREFIX}{n}", f"lt-b{n}h", f"lt-b{n}n"
    ip("netns", "add", ns)
    ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
    ip("link", "set", ns_end, "netns", ns)
    ip("addr", "add", f"10.213.{n}.1/30", "dev", host_end)
    ip("link", "set", host_end, "up")
    ip("netns", "exec", ns, "ip", "addr", "add", f"{address(n)}/30", "dev", ns_end)
    ip("netns", "exec", ns, "ip", "link", "set", ns_end, "up")
    ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")


class Hosts:
    """The backends in their namespaces: start, SIGKILL and restart one, stop all."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[int, subprocess.Popen] = {}

    def start(self, n: int) -> None:
        # `ip netns exec` execs the command, so the Popen pid is the backend's own pid.
        argv = ["ip", "netns", "exec", f"{PREFIX}{n}", str(ROOT / ".venv" / "bin" / "python"),
                str(ROOT / "scripts" / "embedded_backend.py"), "--host", address(n), "--port", str(PORT),
                "--threads", "1", "--no-access-log"]
        log = open(self.logs / f"backend-{n}.log", "ab")  # noqa: SIM115 - owned by the process
        self.procs[n] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_ready(self, n: int, timeout: float = 60) -> None:
        wait_for(lambda: self.procs[n].poll() is None and get_ok(url(n) + "/api/version"), timeout,
                 f"backend {n} at {url(n)} to answer (log: {self.logs / f'backend-{n}.log'})")

    def kill(self, n: int) -> None:
        self.procs[n].send_signal(signal.SIGKILL)
        self.procs[n].wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def get_ok(target: str) -> bool:
    try:
        return requests.get(target, timeout=2).status_code == 200
    except requests.RequestException:
        return False



def cli(env: dict, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmops", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def chat_requests(n: int) -> float:
    """llm_backend_requests_total{endpoint="/api/chat"} of one backend, over all statuses."""
    text = requests.get(url(n) + "/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("llm_backend_requests_total") and '"/api/chat"' in line)


def dashboard_status(env: dict) -> dict:
    return requests.get(f"http://127.0.0.1:{env['DASHBOARD_PORT']}/api/status", timeout=5).json()


def backend_row(status: dict, n: int) -> dict:
    rows = {row["backend"]: row for row in status["components"]["ollama"]["backends"]}
    return rows[f"{address(n)}:{PORT}"]


@pytest.fixture(scope="module")
def hosts(request):
    """Three namespaces with a backend each; removed afterwards, also when a step fails."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add); run the scale-out test as root")
    remove_namespaces()  # leftovers of an interrupted run
    request.addfinalizer(remove_namespaces)
    try:
        ip("netns", "add", f"{PREFIX}1")
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"`ip netns add` does not work here: {getattr(exc, 'stderr', exc)}")
    ip("netns", "del", f"{PREFIX}1")
    for n in range(1, HOSTS + 1):
        create_namespace(n)
    logs = ROOT / ".run-test" / "scaleout" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    running = Hosts(logs)
    request.addfinalizer(running.stop_all)
    for n in range(1, HOSTS + 1):
        running.start(n)
    for n in range(1, HOSTS + 1):
        running.wait_ready(n)
    return running


def one_model_config(folder: Path) -> str:
    """The committed proxy config with only smollm2:135m routed (and so no fallbacks)."""
    data = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
    data["model_list"] = [m for m in data["model_list"] if m["model_name"] == "smollm2:135m"]
    for key in ("fallbacks", "context_window_fallbacks"):
        data.get("router_settings", {}).pop(key, None)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "litellm_config.one-model.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def env(hosts):
    """The stack (proxy, Prometheus, dashboard) in front of the three namespaced hosts."""
    environ = test_environ()
    environ.update(PORTS)
    environ.update({
        "OLLAMA_HOSTS": ",".join(url(n) for n in range(1, HOSTS + 1)),
        "LLMOPS_STATE_DIR": ".run-test/scaleout/state", "LLMOPS_LOG_DIR": ".run-test/scaleout/logs",
        "PROMETHEUS_DATA_DIR": ".run-test/scaleout/prometheus-data",
        "ALERTMANAGER_DATA_DIR": ".run-test/scaleout/alertmanager-data", "ALERT_HISTORY_PATH": ".run-test/scaleout/alerts.db",
        "LLMOPS_ENV_FILE": str(ROOT / ".run-test" / "scaleout" / "env"),
        "CANARY_INTERVAL": "0", "PROBE_INTERVAL": "1",
        # Scale-out is about hosts, not models: one chat model, so the proxy's health checks (a real generation
        # per model and host every 10 s) do not crowd the two cores the hosts share.
        "LITELLM_CONFIG": one_model_config(ROOT / ".run-test" / "scaleout"),
    })
    started = cli(environ, "start")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield environ
    finally:
        cli(environ, "stop")


def test_every_host_is_a_deployment_a_scrape_target_and_a_row(env):
    result = cli(env, "status", "--json", timeout=60)
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    for n, name in enumerate(("ollama", "ollama-2", "ollama-3"), start=1):
        assert rows[name]["address"] == f"{address(n)}:{PORT}" and rows[name]["healthy"], rows[name]
    state = ROOT / env["LLMOPS_STATE_DIR"]
    proxy = yaml.safe_load((state / "litellm_config.yaml").read_text())
    assert sorted(d["litellm_params"]["api_base"] for d in proxy["model_list"]) == [url(n) for n in (1, 2, 3)]
    assert {d["model_name"] for d in proxy["model_list"]} == {"smollm2:135m"}
    prom = yaml.safe_load((state / "prometheus.yml").read_text())
    ollama_job = next(j for j in prom["scrape_configs"] if j["job_name"] == "ollama")
    assert ollama_job["static_configs"][0]["targets"] == [f"{address(n)}:{PORT}" for n in (1, 2, 3)]
    status = wait_for(lambda: (s := dashboard_status(env))["overall"] == "healthy" and s, 30,
                      "the dashboard to say healthy with three hosts up")
    assert len(status["components"]["ollama"]["backends"]) == 3


def test_dead_host_is_routed_around_named_and_rejoins(env, hosts, tmp_path):
    from llmops.traffic import TrafficConfig, run

    key = next(line.split("=", 1)[1] for line in Path(env["LLMOPS_ENV_FILE"]).read_text().splitlines()
               if line.startswith("LITELLM_MASTER_KEY="))
    output = tmp_path / "traffic.jsonl"
    config = TrafficConfig(url=f"http://127.0.0.1:{env['LITELLM_PORT']}", api_key=key.strip().strip("'\""),
                           duration=TRAFFIC_S, concurrency=CONCURRENCY, max_tokens=16, seed=8, timeout=60,
                           output=output)
    outcome: dict = {}
    t0 = time.perf_counter()
    worker = threading.Thread(target=lambda: outcome.setdefault("result", run(config)), daemon=True)
    worker.start()
    wait_for(lambda: output.exists() and len(output.read_text().splitlines()) >= 10, 60, "10 requests through")

    killed_at = time.perf_counter() - t0
    hosts.kill(VICTIM)
    status = wait_for(lambda: (s := dashboard_status(env))["overall"] == "degraded" and s, 30,
                      "the dashboard to say degraded")
    dead = f"{address(VICTIM)}:{PORT}"
    assert dead in status["reason"], status["reason"]
    assert backend_row(status, VICTIM)["status"] != "healthy"
    assert all(backend_row(status, n)["status"] == "healthy" for n in (1, 3))

    # Leave it dead for 35 s: several health-check rounds and one whole cooldown_time.
    time.sleep(max(0.0, killed_at + 35 - (time.perf_counter() - t0)))  # a timeline step, not a wait on a state
    restarted_at = time.perf_counter() - t0
    hosts.start(VICTIM)
    hosts.wait_ready(VICTIM)
    wait_for(lambda: backend_row(dashboard_status(env), VICTIM)["status"] == "healthy", 30,
             "the dashboard to see the restarted host")
    wait_for(lambda: chat_requests(VICTIM) > 0, 50, "the proxy to send chat requests to the restarted host again")
    worker.join(TRAFFIC_S + 90)
    assert "result" in outcome, "the traffic run did not finish"
    final = wait_for(lambda: (s := dashboard_status(env))["overall"] == "healthy" and s, 30, "healthy again")
    assert dead not in final["reason"]

    records = [json.loads(line) for line in output.read_text().splitlines()]
    measured = [r for r in records if r["phase"] == "measure"]
    during = [r for r in measured if killed_at - 5 <= r["start_s"] < killed_at + SETTLE_S]
    after = [r for r in measured if killed_at + SETTLE_S <= r["start_s"] < restarted_at]
    ratio = lambda rs: sum(r["status"] != "ok" for r in rs) / len(rs)  # noqa: E731
    print(f"\nkilled at {killed_at:.1f} s, restarted at {restarted_at:.1f} s; during: {len(during)} requests, "
          f"{ratio(during):.1%} failed; after: {len(after)} requests, {ratio(after):.1%} failed")
    assert len(after) >= 20, "too little traffic after the cooldown to judge"
    assert ratio(after) <= AFTER_MAX_ERROR_RATIO, [r for r in after if r["status"] != "ok"][:5]
    assert ratio(during) <= DURING_MAX_ERROR_RATIO, [r for r in during if r["status"] != "ok"][:5]

    # The proxy stopped sending to the dead host: its failed calls there are those of the first health-check
    # interval (LiteLLM does not cool a host down for connection errors), not a third of the traffic.
    metrics = requests.get(f"http://127.0.0.1:{env['LITELLM_PORT']}/metrics/",
                           headers={"Authorization": f"Bearer {config.api_key}"}, timeout=10).text
    to_dead = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                  if line.startswith("litellm_deployment_failure_responses_total") and address(VICTIM) in line)
    between = [r for r in measured if killed_at <= r["start_s"] < restarted_at]
    print(f"calls that failed at the dead host: {to_dead:.0f} of {len(between)} requests while it was down")
    assert 1 <= to_dead <= len(between) / 5  # unexcluded, a third of the calls (and retries) would go there
