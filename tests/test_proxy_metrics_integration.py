"""The real LiteLLM proxy, with the rendered metrics list, against FAKE Ollamas: each listed family shows on
/metrics/ after traffic (fallbacks included), an unlisted one does not, and a warm proxy retries no OTel import."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import openai
import pytest
import requests
import yaml
from openai import OpenAI

from llmops import settings
from llmops.proxy import config as proxyconf
from llmops.proxy import launch as proxylaunch
from llmops.proxy import metrics as proxymetrics
from tests.support.audited_proxy import failing_imports, read_snapshot
from tests.support.env import test_environ
from tests.support.fakes.ollama import FakeOllama
from tests.support.helpers import free_port, wait_for
from tests.support.processes import ManagedProcess

pytestmark = pytest.mark.integration
KEY = "sk-test-proxymetrics"
UA = {"User-Agent": "llmops-test/proxymetrics"}
# On by default in LiteLLM 1.108.7, off with the list: budget metrics (the per-request database lookups), spend.
UNLISTED = ("litellm_remaining_api_key_budget_metric", "litellm_remaining_user_budget_metric", "litellm_spend_metric",
            "litellm_deployment_total_requests", "litellm_requests_metric")


def fallback_config(tmp_path: Path, broken_url: str) -> Path:
    """The committed config plus two models on a backend that answers 500: one falls back to a healthy model
    (a successful fallback), one to a third broken model that has no fallback (a failed fallback)."""
    data = yaml.safe_load(proxyconf.CONFIG.read_text())
    healthy = data["model_list"][0]
    for name in ("broken-a", "broken-b", "broken-c"):
        data["model_list"].append({"model_name": name, "litellm_params": {
            **healthy["litellm_params"], "api_base": broken_url}, "model_info": healthy["model_info"]})
    data["router_settings"]["fallbacks"] = [{"broken-a": [healthy["model_name"]]}, {"broken-b": ["broken-c"]}]
    data["router_settings"]["enable_health_check_routing"] = False
    data["general_settings"]["background_health_checks"] = False  # no generations nobody sent
    path = tmp_path / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """One proxy (1 worker, the shipped launch's argv and environment) run under the import audit."""
    tmp = tmp_path_factory.mktemp("proxymetrics")
    healthy, broken = FakeOllama().start(), FakeOllama().start()
    broken.set_fault("http500", path="/api/chat")
    port = free_port()
    environ = test_environ()
    environ.update({"LITELLM_PORT": str(port), "OLLAMA_HOSTS": healthy.url, "LITELLM_WORKERS": "1",
                    "LLMOPS_STATE_DIR": str(tmp / "state"), "LITELLM_MASTER_KEY": KEY,
                    "LITELLM_CONFIG": str(fallback_config(tmp, broken.url))})
    argv, env = proxylaunch.command(settings.load(env_file=tmp / "env", environ=environ))
    env["LLMOPS_IMPORT_AUDIT"] = str(tmp / "audit.json")
    url = f"http://127.0.0.1:{port}"
    proc = ManagedProcess([sys.executable, "-m", "tests.support.audited_proxy", *proxylaunch.litellm_args(argv)],
                          tmp / "litellm.log", "the audited proxy", ready=f"{url}/health/liveliness", env=env,
                          timeout=120, url=url)
    try:
        with proc:
            yield {"url": url, "pid": proc.pid, "audit": str(tmp / "audit.json"), "healthy": healthy}
    finally:
        healthy.stop()
        broken.stop()


def traffic(client: OpenAI, n: int = 2) -> None:
    """Successful requests of both kinds: plain, and streamed (the only kind LiteLLM times the first token of)."""
    for i in range(n):
        reply = client.chat.completions.create(model="smollm2:135m", max_tokens=4,
                                               messages=[{"role": "user", "content": f"plain {i}"}])
        assert reply.choices[0].message.content
        chunks = list(client.chat.completions.create(model="smollm2:135m", max_tokens=4, stream=True,
                                                     messages=[{"role": "user", "content": f"stream {i}"}]))
        assert any(c.choices and c.choices[0].delta.content for c in chunks)


def samples(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )", text, re.MULTILINE)}


def test_each_listed_family_has_samples_after_traffic_and_unlisted_ones_are_gone(proxy):
    client = OpenAI(base_url=proxy["url"] + "/v1", api_key=KEY, default_headers=UA, max_retries=0)
    traffic(client)
    # A fallback that works: broken-a answers 500, smollm2:135m answers instead.
    answered = client.chat.completions.create(model="broken-a", max_tokens=4,
                                              messages=[{"role": "user", "content": "fall back"}])
    assert answered.choices[0].message.content
    # One that does not: broken-b falls back to broken-c, which fails too. The client sees an error (a failure).
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="broken-b", max_tokens=4, messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code >= 500

    state = {}

    def all_listed_seen():
        state["text"] = requests.get(proxy["url"] + "/metrics/", headers={"Authorization": f"Bearer {KEY}", **UA},
                                     timeout=10).text
        state["seen"] = samples(state["text"])
        state["missing"] = [n for n in proxymetrics.METRICS if not set(proxymetrics.sample_names(n)) & state["seen"]]
        return not state["missing"]

    try:
        wait_for(all_listed_seen, 30, "every listed family on /metrics/")
    except AssertionError:
        raise AssertionError(f"listed but without samples on /metrics/: {state['missing']}") from None
    seen, text = state["seen"], state["text"]
    unlisted = [name for name in UNLISTED if any(s.startswith(name) for s in seen)]
    assert not unlisted, f"exported although not listed: {unlisted}"
    # The labels the rules and the dashboard filter on are kept (the group sets no include_labels).
    for label in ("route=", "status_code=", "requested_model=", "user_agent="):
        assert re.search(r"^litellm_proxy_total_requests_metric_total\{[^}]*" + label, text, re.MULTILINE), label
    assert re.search(r'^litellm_proxy_failed_requests_metric_total\{[^}]*exception_status=', text, re.MULTILINE)


def test_a_warm_proxy_retries_no_failing_import_per_request(proxy):
    client = OpenAI(base_url=proxy["url"] + "/v1", api_key=KEY, default_headers=UA, max_retries=0)
    traffic(client, 3)  # warm: first-time imports happen here
    before = read_snapshot(proxy["pid"], proxy["audit"])
    traffic(client, 10)
    after = read_snapshot(proxy["pid"], proxy["audit"])
    # The audit sees the proxy's imports: LiteLLM's per-request OTel import ran once and stayed loaded.
    assert "litellm.integrations.otel.logger" in after["loaded"]
    assert not after["hidden"]
    failed = failing_imports(before, after)
    assert not [name for name in failed if "otel" in name or "opentelemetry" in name], failed
    # LiteLLM 1.108.7's auth looks the master key's user ("default_user_id") up without a database on every
    # request, and its failure handler imports prisma.errors: with the prisma package installed (requirements.txt)
    # that import succeeds once and stays cached, so nothing fails and re-runs per request.
    assert "prisma.errors" in after["loaded"]
    assert not failed, failed
