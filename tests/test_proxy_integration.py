"""The real LiteLLM proxy in front of the embedded backend, scraped by the real Prometheus."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.fakes.ollama import FakeOllama
from tests.support.helpers import wait_for
from tests.support.proxy import real_proxy

pytestmark = pytest.mark.integration
UA = {"User-Agent": "llmops-test/1"}


def auth(stack) -> dict:
    return {"Authorization": f"Bearer {stack.key}", **UA}


def chat(url: str, headers: dict, content: str = "Say hello", max_tokens: int = 8, timeout: float = 120):
    return requests.post(f"{url}/v1/chat/completions", headers=headers, timeout=timeout, json={
        "model": "smollm2:135m", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens})



def prom_value(stack, query: str) -> float:
    body = requests.get(f"{stack.settings.prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def test_chat_completion_through_the_proxy_has_content_and_usage(ensure_stack_ready):
    stack = ensure_stack_ready
    response = chat(stack.settings.litellm_url, auth(stack))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"].strip()
    assert body["usage"]["completion_tokens"] > 0 and body["usage"]["prompt_tokens"] > 0


def test_prometheus_counts_every_request_sent_through_the_proxy(ensure_stack_ready):
    stack = ensure_stack_ready
    query = ('sum(litellm_proxy_total_requests_metric_total{requested_model="smollm2:135m",'
             'user_agent="llmops-test/counting"})')
    before = prom_value(stack, query)
    n = 3
    for i in range(n):
        assert chat(stack.settings.litellm_url, {**auth(stack), "User-Agent": "llmops-test/counting"},
                    content=f"Count {i}").status_code == 200
    wait_for(lambda: prom_value(stack, query) >= before + n, 60, f"Prometheus to see {n} more requests")
    tokens = 'sum(litellm_output_tokens_metric_total{requested_model="smollm2:135m"})'
    assert prom_value(stack, tokens) >= n


def test_every_scrape_target_is_up(ensure_stack_ready):
    stack = ensure_stack_ready

    def all_up():
        targets = requests.get(f"{stack.settings.prometheus_url}/api/v1/targets", timeout=5).json()
        active = targets["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in active}
        return health if health and all(h == "up" for h in health.values()) else None

    health = wait_for(all_up, 60, "every scrape target to be up")
    assert {"litellm", "dashboard", "ollama", "prometheus"} <= set(health)


def test_effective_settings_are_the_configured_ones(ensure_stack_ready):
    stack = ensure_stack_ready
    current = requests.get(f"{stack.settings.litellm_url}/router/settings", headers=auth(stack),
                           timeout=10).json()["current_values"]
    assert current["num_retries"] == 1
    assert current["timeout"] == 120
    assert current["routing_strategy"] == "simple-shuffle"
    assert current["default_litellm_params"]["timeout"] == 120  # litellm_settings.request_timeout
    # background_health_checks: the proxy's own health check shows up as requests nobody sent.
    def health_check_seen():
        text = requests.get(f"{stack.settings.litellm_url}/metrics/", headers=auth(stack), timeout=10).text
        return 'api_key_alias="litellm-internal-health-check"' in text
    wait_for(health_check_seen, 60, "the proxy's background health check")


def test_metrics_need_the_key(ensure_stack_ready):
    stack = ensure_stack_ready
    url = f"{stack.settings.litellm_url}/metrics/"
    assert requests.get(url, timeout=10, headers=UA).status_code in (401, 403)
    with_key = requests.get(url, timeout=10, headers=auth(stack))
    assert with_key.status_code == 200 and "litellm_proxy_total_requests_metric_total" in with_key.text


def test_models_without_the_key_is_an_error_not_a_list(ensure_stack_ready):
    stack = ensure_stack_ready
    # LiteLLM 1.108.7 answers 500 here (its auth error path imports prisma): read it as "auth misconfigured".
    response = requests.get(f"{stack.settings.litellm_url}/v1/models", timeout=10, headers=UA)
    assert response.status_code in (401, 500)


def queue_busy(url: str, headers: dict) -> float | None:
    """The queue's busy slots from the proxy's /metrics/; None while it exports none (never mistaken for 0)."""
    text = requests.get(f"{url}/metrics/", headers=headers, timeout=10).text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("llmops_queue_busy_slots{")]
    return sum(values) if values else None


def test_max_parallel_limit_answers_429(tmp_path):
    fake = FakeOllama().start()
    fake.set_fault("slow", 1.0, path="/api/chat")  # one second per answer: enough to fill a one-slot proxy
    headers = {"Authorization": "Bearer sk-test-429-key", **UA}
    try:
        # LITELLM_MAX_PARALLEL stays a hard cap beside the queue: with more queue slots (6) than it (1), it answers 429.
        with real_proxy(tmp_path, "sk-test-429-key", OLLAMA_HOSTS=fake.url, LITELLM_MAX_PARALLEL="1",
                        OLLAMA_NUM_PARALLEL="6") as url, \
                ThreadPoolExecutor(6) as pool:
            codes = [r.status_code for r in pool.map(lambda _: chat(url, headers, timeout=60), range(6))]
            # LiteLLM's limiter refuses after the queue gave the slot: its failure hook gives it back.
            wait_for(lambda: queue_busy(url, headers) == 0, 15, "the queue's slots given back after the 429s")
        assert 200 in codes and 429 in codes, codes
    finally:
        fake.stop()
