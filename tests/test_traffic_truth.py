"""Traffic truth from the first request: exact counts per outcome class on a fresh stack, and after a proxy SIGKILL.

Real parts: the LiteLLM proxy, Prometheus and the embedded backend (llama.cpp), with the dashboard's own
probes and summary in process. Fakes only where a failure must be injected (tests/support/fakes/ollama.py):
one answers HTTP 500, one is slow, which fills the priority queue's slots and line (429s) and outlasts a model's timeout (408).
Every request but the steady ok ones carries a User-Agent the stack has never seen: a new series each.
"""
from __future__ import annotations

import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from llmops import outcomes
from llmops import settings as settings_mod
from tests.support.backend import BackendProcess
from tests.support.env import ROOT
from tests.support.fakes.ollama import FakeOllama
from tests.support.helpers import wait_for
from tests.support.processes import ManagedProcess
from tests.support.proxy import prometheus_process, proxy_process

pytestmark = pytest.mark.integration

KEY = "sk-test-traffic-truth"
MODEL, BROKEN, SLOW, SLUGGISH = "smollm2:135m", "broken", "slow", "sluggish"
SLOTS = 2  # OLLAMA_NUM_PARALLEL: the queue lets two requests in flight to a fake, one more waits (QUEUE_MAX)
QUEUE_TIMEOUT = 1  # seconds: the one that waits leaves with 429 long before a slow holder is done
SLOW_SECONDS = 4.0  # the slow fake's delay: holds the slow model's slots while the 429s are sent
SLUGGISH_TIMEOUT = 1  # seconds; the sluggish model (the same slow fake) times out: HTTP 408
PROBE_INTERVAL = 1.0
SCRAPE_INTERVAL = int(yaml.safe_load((ROOT / "prometheus.yml").read_text())["global"]["scrape_interval"].rstrip("s"))
# The feature's bound: exact counts within two scrape-plus-probe intervals of the last request.
WITHIN = 2 * (SCRAPE_INTERVAL + PROBE_INTERVAL)


def proxy_config(path: Path, broken_url: str, slow_url: str) -> Path:
    """The project's litellm_config.yaml plus three models served by fakes."""
    data = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
    base = data["model_list"][0]
    for name, url, extra in ((BROKEN, broken_url, {}), (SLOW, slow_url, {}),
                             (SLUGGISH, slow_url, {"timeout": SLUGGISH_TIMEOUT})):
        data["model_list"].append({"model_name": name, "model_info": dict(base["model_info"]),
                                   "litellm_params": {"model": base["litellm_params"]["model"], "api_base": url, **extra}})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def prometheus(tmp: Path, proxy_port: int) -> ManagedProcess:
    """The real Prometheus scraping the proxy every SCRAPE_INTERVAL (restartable on the same port and data)."""
    (tmp / "key").write_text(KEY + "\n")
    (tmp / "key").chmod(0o600)
    config = {"global": {"scrape_interval": f"{SCRAPE_INTERVAL}s", "evaluation_interval": f"{SCRAPE_INTERVAL}s",
                         "scrape_timeout": "5s"},
              "scrape_configs": [{"job_name": "litellm", "metrics_path": "/metrics/",
                                  "authorization": {"type": "Bearer", "credentials_file": str(tmp / "key")},
                                  "static_configs": [{"targets": [f"127.0.0.1:{proxy_port}"]}]}]}
    return prometheus_process(tmp, yaml.safe_dump(config))


@pytest.fixture(scope="module")
def truth_stack(tmp_path_factory):
    """Backend, two fault fakes, a proxy in front of them all, Prometheus scraping it, the dashboard's app."""
    from llmops.dashboard.app import create_app

    tmp = tmp_path_factory.mktemp("traffic-truth")
    backend = BackendProcess("--no-access-log")
    broken, slow = FakeOllama().start(), FakeOllama().start()
    broken.set_fault("http500", path="/api/chat")
    slow.set_fault("slow", delay=SLOW_SECONDS, path="/api/chat")
    proxy = proxy_process(tmp, KEY, "truth", OLLAMA_HOSTS=backend.url, OLLAMA_NUM_PARALLEL=str(SLOTS), QUEUE_MAX="1",
                          QUEUE_TIMEOUT=str(QUEUE_TIMEOUT),
                          LITELLM_NUM_RETRIES="0",
                          LITELLM_CONFIG=str(proxy_config(tmp / "litellm_config.yaml", broken.url, slow.url)))
    env = proxy.env
    prom = prometheus(tmp, proxy.port)
    app = None
    try:
        proxy.start()
        prom.start()
        settings = settings_mod.load(env_file=tmp / "env-truth", environ={
            **env, "PROMETHEUS_PORT": str(prom.port), "PROBE_INTERVAL": str(PROBE_INTERVAL), "CANARY_INTERVAL": "3"})
        app = create_app({"SETTINGS": settings, "CACHE_SECONDS": 0, "SERVICE_PIDS": lambda: {},
                          "DETAIL_INTERVAL": 3600.0})
        yield {"proxy": proxy, "app": app, "client": app.test_client(), "slow": slow, "prom": prom,
               "prom_url": prom.url}
    finally:
        if app is not None:
            app.extensions["llmops"]["monitor"].stop()
            app.extensions["llmops"]["host_view"].stop()
        proxy.stop()
        prom.stop()
        broken.stop()
        slow.stop()
        backend.stop()


def send(url: str, model: str, agent: str, body: dict | None = None) -> int:
    payload = body if body is not None else {"model": model, "messages": [{"role": "user", "content": "Say hi"}],
                                             "max_tokens": 4}
    response = requests.post(f"{url}/v1/chat/completions", json=payload, timeout=60,
                             headers={"Authorization": f"Bearer {KEY}", "User-Agent": agent})
    return response.status_code


def new_agent(kind: str) -> str:
    return f"truth-{kind}-{uuid.uuid4().hex[:8]}/1"


def send_every_class(stack: dict, n_ok: int, m_bad: int, k_limited: int, j_broken: int, t_timeout: int) -> Counter:
    """Send each class's requests; return the status codes the clients got, by class."""
    url, got = stack["proxy"].url, Counter()
    for _ in range(n_ok):  # one steady client: its series lives across the proxy restart (a counter reset)
        got[outcomes.classify(send(url, MODEL, "truth-steady/1"))] += 1
    for i in range(m_bad):
        # An unknown model, and a body without messages: both rejected with HTTP 400.
        body = {"model": MODEL, "max_tokens": 4} if i % 2 else None
        got[outcomes.classify(send(url, "no-such-model" if not i % 2 else MODEL, new_agent("bad"), body))] += 1
    for _ in range(j_broken):
        got[outcomes.classify(send(url, BROKEN, new_agent("broken")))] += 1
    for _ in range(t_timeout):
        got[outcomes.classify(send(url, SLUGGISH, new_agent("sluggish")))] += 1
    # Fill the slow model's slots, then send k_limited more while they are held: the first waits in the queue and
    # leaves after QUEUE_TIMEOUT, the others find the line full; each gets 429.
    slow: FakeOllama = stack["slow"]
    before = slow.counts()["/api/chat"]
    with ThreadPoolExecutor(SLOTS + k_limited) as pool:
        holders = [pool.submit(send, url, SLOW, new_agent("holder")) for _ in range(SLOTS)]
        wait_for(lambda: slow.counts()["/api/chat"] >= before + SLOTS, 30, "the slow model's slots to fill")
        limited = [pool.submit(send, url, SLOW, new_agent("limited")) for _ in range(k_limited)]
        for future in limited + holders:
            got[outcomes.classify(future.result())] += 1
    return got


def chart_totals(stack: dict) -> dict:
    """Requests per class in the 15m requests chart: each point is req/s over one step."""
    doc = stack["client"].get("/api/charts?window=15m").get_json()
    requests_chart = next(c for c in doc["charts"] if c["id"] == "requests")
    names = {outcomes.LEGENDS[name]: name for name in outcomes.CLASSES}
    return {names[s["name"]]: round(sum(v * doc["step"] for _, v in s["points"] if v is not None))
            for s in requests_chart["series"] if s["name"] in names}  # the embeddings series is a kind, not a class


def counts_of(stack: dict) -> tuple[dict, dict]:
    client = stack["client"]
    status = client.get("/api/status").get_json()["components"]["traffic"]
    summary = client.get("/api/metrics/summary").get_json()
    return status.get("outcomes") or {}, summary


def diagnosis(stack: dict) -> str:
    """What the dashboard and Prometheus saw, for a failure message."""
    prom = stack["prom_url"]
    targets = requests.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    raw = requests.get(f"{prom}/api/v1/query", timeout=5,
                       params={"query": "litellm_proxy_total_requests_metric_total"}).json()["data"]["result"]
    status, summary = counts_of(stack)
    return (f"status: {status}\nsummary: {summary.get('outcomes')} {summary.get('detail')}\n"
            f"targets: {[(t['health'], t.get('lastError')) for t in targets]}\n"
            f"series: {[(r['metric'].get('status_code'), r['metric'].get('user_agent'), r['metric'].get('route'), r['value'][1]) for r in raw]}")


def wait_exact(stack: dict, expected: dict, since: float) -> dict:
    """Wait until /api/status and /api/metrics/summary both report `expected`; assert it took at most WITHIN."""
    def exact():
        status, summary = counts_of(stack)
        return summary if status == expected and summary.get("outcomes") == expected else None

    try:
        summary = wait_for(exact, WITHIN + 30, f"exact counts {expected}", poll=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnosis(stack)}") from None
    took = time.monotonic() - since
    assert took <= WITHIN, f"exact counts took {took:.1f} s, more than two scrape+probe intervals ({WITHIN:g} s)"
    return summary


def test_every_request_is_counted_by_class_from_the_first_and_after_a_proxy_sigkill(truth_stack):
    stack = truth_stack
    first = {"n_ok": 4, "m_bad": 3, "k_limited": 3, "j_broken": 2, "t_timeout": 1}
    got = send_every_class(stack, **first)
    sent_at = time.monotonic()
    expected = {**outcomes.empty_counts(), **got}
    # What the clients saw is what was asked for: the holders of the slow slots are ok too.
    assert expected == {"ok": 4 + SLOTS, "client_error": 3, "rate_limited": 3, "server_error": 2, "timeout": 1}
    summary = wait_exact(stack, expected, sent_at)
    assert summary["requests"] == sum(expected.values())
    models = summary["models"]
    assert models[MODEL]["outcomes"]["ok"] == 4  # the canary's requests are not among them
    assert models[SLOW]["outcomes"] == {**outcomes.empty_counts(), "ok": SLOTS, "rate_limited": 3}
    assert models[BROKEN]["outcomes"]["server_error"] == 2 and models[SLUGGISH]["outcomes"]["timeout"] == 1
    assert models[MODEL]["latency_p50_s"] is not None and models[MODEL]["output_tokens_per_s"] > 0
    reason = stack["client"].get("/api/status").get_json()["reason"]
    assert "3 client errors (HTTP 400)" in reason and "2 server errors (HTTP 500)" in reason, reason
    # The requests chart's points are per-step counts that tile the window: they add up to the same totals.
    chart = wait_for(lambda: chart_totals(stack) == expected and chart_totals(stack), 30, "the chart's totals")
    assert chart == expected

    stack["proxy"].kill()
    stack["proxy"].start()
    second = {"n_ok": 2, "m_bad": 1, "k_limited": 2, "j_broken": 1, "t_timeout": 1}
    got_after = send_every_class(stack, **second)
    sent_at = time.monotonic()
    after = {**outcomes.empty_counts(), **got_after}
    assert after == {"ok": 2 + SLOTS, "client_error": 1, "rate_limited": 2, "server_error": 1, "timeout": 1}
    both = {name: expected[name] + after[name] for name in outcomes.CLASSES}
    wait_exact(stack, both, sent_at)

    # Prometheus restarts (same data) while requests arrive: they are counted once it is back, nothing twice.
    stack["prom"].stop()
    during = {**outcomes.empty_counts(), **send_every_class(stack, n_ok=1, m_bad=1, k_limited=0, j_broken=1,
                                                             t_timeout=0)}
    stack["prom"].start()
    wait_exact(stack, {name: both[name] + during[name] for name in outcomes.CLASSES}, time.monotonic())
