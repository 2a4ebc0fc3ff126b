"""The priority queue in the real LiteLLM proxy, in front of the real embedded backend (one slot).

A holder request (temperature 0, a counting prompt that runs to max_tokens) keeps the one slot busy for seconds,
so the requests sent meanwhile are known to wait; the tests wait on the queue's own gauges in /metrics/, never
on sleeps. Every path that ends a request is walked, and each ends with the busy count back at 0.
"""
from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests

from llmops.proxy.config import REQUEST_LOG_CALLBACK
from tests.support.backend import BackendProcess
from tests.support.helpers import wait_for
from tests.support.proxy import real_proxy
from tests.support.queue import (
    CONFIG,
    HOLD_PROMPT,
    KEY,
    MODEL,
    backend_chats,
    busy,
    chat,
    client,
    family,
    hold,
    metrics,
    wait_idle,
    waiting,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def backend():
    # One slot: the queue's ordering is seen only when the backend serves one request at a time.
    proc = BackendProcess("--num-parallel", "1")
    try:
        yield proc
    finally:
        proc.stop()


def _start(tmp_path_factory, backend, **env):
    tmp = tmp_path_factory.mktemp("queue-proxy")
    config = CONFIG
    if env.get("REQUEST_LOG") == "1":  # the request log's plug-in beside the queue's
        config = config.replace('callbacks: ["prometheus"]', f'callbacks: ["prometheus", "{REQUEST_LOG_CALLBACK}"]')
    (tmp / "litellm_config.yaml").write_text(config)
    env = {"REQUEST_LOG": "0", "BACKEND_NUM_PARALLEL": "1", **env}
    return real_proxy(tmp, KEY, OLLAMA_HOSTS=backend.url, LITELLM_CONFIG=str(tmp / "litellm_config.yaml"), **env)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, backend):
    with _start(tmp_path_factory, backend, QUEUE_TIMEOUT="60", QUEUE_MAX="5", QUEUE_DEFAULT_PRIORITY="10") as url:
        yield url


def test_the_queue_exports_one_slot_for_the_embedded_backend(proxy, backend):
    chat(proxy)
    wait_idle(proxy)
    text = metrics(proxy)
    assert family(text, "llmops_queue_slots", backend=backend.url, model=MODEL) == 1
    assert family(text, "llmops_queue_wait_seconds_count") >= 1


def test_a_high_priority_request_overtakes_the_waiting_low_ones(proxy):
    wait_idle(proxy)
    finished: list[str] = []
    lock = threading.Lock()

    def run(name: str, priority: int, tokens: int = 4):
        chat(proxy, f"Say {name}", max_tokens=tokens, priority=priority)
        with lock:
            finished.append(name)

    with ThreadPoolExecutor(8) as pool:
        holder = pool.submit(hold, proxy)
        wait_for(lambda: busy(proxy) == 1, 30, "the holder to take the slot")
        lows = [pool.submit(run, f"low{i}", 9) for i in range(4)]
        wait_for(lambda: waiting(proxy) == 4, 30, "4 low-priority requests waiting")
        high = pool.submit(run, "high", 0)
        for future in [holder, high, *lows]:
            future.result(timeout=120)
    assert finished[0] == "high", f"order of completion: {finished}"
    wait_idle(proxy)


def test_equal_priorities_are_served_in_arrival_order(proxy):
    wait_idle(proxy)
    finished: list[int] = []
    with ThreadPoolExecutor(6) as pool:
        holder = pool.submit(hold, proxy, 150)
        wait_for(lambda: busy(proxy) == 1, 30, "the holder to take the slot")
        futures = []
        for i in range(3):
            futures.append(pool.submit(lambda i=i: (chat(proxy, f"Say {i}", priority=5), finished.append(i))))
            wait_for(lambda i=i: waiting(proxy) == i + 1, 30, f"{i + 1} requests waiting")
        for future in [holder, *futures]:
            future.result(timeout=120)
    assert finished == [0, 1, 2]
    wait_idle(proxy)


@pytest.mark.parametrize("priority", ["high", -1, 256, 10**12, 1.5, True])
def test_a_bad_priority_is_a_400_in_openais_shape_and_the_queue_is_unchanged(proxy, priority):
    wait_idle(proxy)
    before = metrics(proxy)
    response = requests.post(f"{proxy}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                             json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                                   "priority": priority})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "priority" and "255" in error["message"], error
    after = metrics(proxy)
    for name in ("llmops_queue_busy_slots", "llmops_queue_waiting", "llmops_queue_rejected_total",
                 "llmops_queue_wait_seconds_count"):
        assert family(after, name) == family(before, name), name
    assert chat(proxy, priority=0).choices  # the proxy still serves


def test_priority_0_is_served_and_not_handed_to_litellms_scheduler(proxy):
    wait_idle(proxy)
    response = chat(proxy, priority=0)
    assert response.choices[0].message.content is not None
    assert family(metrics(proxy), "llmops_queue_wait_seconds_count", priority="0") >= 1


def test_a_full_queue_answers_429_at_once_with_retry_after_and_cools_nothing_down(proxy, backend):
    wait_idle(proxy)
    with ThreadPoolExecutor(8) as pool:
        holder = pool.submit(hold, proxy)
        wait_for(lambda: busy(proxy) == 1, 30, "the holder to take the slot")
        queued = [pool.submit(chat, proxy, f"q{i}") for i in range(5)]
        wait_for(lambda: waiting(proxy) == 5, 30, "5 requests waiting (QUEUE_MAX)")
        started = time.monotonic()
        response = requests.post(f"{proxy}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                                 timeout=30, json={"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                                                   "max_tokens": 2})
        elapsed = time.monotonic() - started
        assert response.status_code == 429, response.text
        assert int(response.headers["retry-after"]) >= 1
        error = response.json()["error"]
        assert "queue full" in error["message"] and error["type"] == "rate_limit_error"
        assert elapsed < 5, f"the refusal took {elapsed:.1f} s"
        assert family(metrics(proxy), "llmops_queue_rejected_total", reason="full") >= 1
        for future in [holder, *queued]:
            future.result(timeout=120)
    # One backend: had the 429 cooled it down, this would fail with "No deployments available".
    assert chat(proxy).choices
    wait_idle(proxy)


def test_a_stream_gives_its_slot_back_at_its_end(proxy):
    wait_idle(proxy)
    stream = chat(proxy, "Say hello", max_tokens=8, stream=True)
    chunks = list(stream)
    assert chunks
    wait_idle(proxy, 15)


def test_a_client_that_closes_mid_stream_gives_its_slot_back(proxy):
    wait_idle(proxy)
    stream = chat(proxy, HOLD_PROMPT, max_tokens=300, stream=True, priority=0)
    first = next(iter(stream))
    assert first is not None
    assert busy(proxy) == 1
    stream.close()
    wait_idle(proxy, 30)
    assert chat(proxy).choices


def test_a_client_that_leaves_while_queued_leaves_the_queue_and_never_reaches_the_backend(proxy, backend):
    wait_idle(proxy)
    left_before = family(metrics(proxy), "llmops_queue_rejected_total", reason="client_left")
    with ThreadPoolExecutor(2) as pool:
        holder = pool.submit(hold, proxy)
        wait_for(lambda: busy(proxy) == 1, 30, "the holder to take the slot")
        chats_before = backend_chats(backend)
        with pytest.raises(openai.APITimeoutError):
            chat(proxy, "I will not wait", timeout=1.0)
        wait_for(lambda: family(metrics(proxy), "llmops_queue_rejected_total", reason="client_left") == left_before + 1,
                 30, "the queue to notice the client left")
        assert waiting(proxy) == 0
        holder.result(timeout=120)
    wait_idle(proxy)
    assert backend_chats(backend) == chats_before + 1  # the holder's only


def test_a_backend_error_gives_the_slot_back(proxy, backend):
    wait_idle(proxy)
    with pytest.raises(openai.APIStatusError):
        client(proxy).chat.completions.create(model="ghost", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    text = metrics(proxy)
    assert family(text, "llmops_queue_wait_seconds_count") > 0
    wait_idle(proxy, 15)
    assert family(metrics(proxy), "llmops_queue_slots", model="ghost:1b") == 1  # it did take a slot
    assert chat(proxy).choices


IMPATIENT_LOG: list = []  # the impatient proxy's request log (the fixture sets it)


def backend_output_tokens(backend, model: str = MODEL) -> float:
    return family(requests.get(f"{backend.url}/metrics", timeout=5).text, "llm_backend_output_tokens_total",
                  model=model)


def test_litellms_health_check_goes_around_the_queue_one_token_a_deployment_and_is_counted(tmp_path_factory,
                                                                                            backend):
    """A fresh proxy's first call is its /health: one generation per chat deployment, outside every proxy hook (no
    slot taken, nothing queued), one token long, and counted on its backend."""
    with _start(tmp_path_factory, backend) as url:
        chats, tokens = backend_chats(backend), backend_output_tokens(backend)
        answer = requests.get(f"{url}/health", headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
        assert answer.status_code == 200 and answer.json()["healthy_count"] == 1, answer.text  # ghost:1b is not
        text = metrics(url)
        assert family(text, "llmops_queue_health_checks_total", backend=backend.url, model=MODEL) == 1, text
        assert family(text, "llmops_queue_health_checks_total", backend=backend.url, model="ghost:1b") == 1
        assert family(text, "llmops_queue_wait_seconds_count") == 0 and busy(url) == 0 and waiting(url) == 0
        assert backend_chats(backend) - chats == 2
        assert backend_output_tokens(backend) - tokens <= 1  # health_check_max_tokens: 1 (num_predict 1)


@pytest.fixture(scope="module")
def impatient_proxy(tmp_path_factory, backend, proxy):
    IMPATIENT_LOG.append(tmp_path_factory.mktemp("queue-log") / "requests.db")
    with _start(tmp_path_factory, backend, QUEUE_TIMEOUT="1", QUEUE_MAX="5", REQUEST_LOG="1",
                REQUEST_LOG_PATH=str(IMPATIENT_LOG[-1])) as url:
        yield url


def test_a_request_that_waits_past_queue_timeout_gets_429_and_never_reaches_the_backend(impatient_proxy, backend):
    url = impatient_proxy
    wait_idle(url)
    with ThreadPoolExecutor(2) as pool:
        holder = pool.submit(hold, url)
        wait_for(lambda: busy(url) == 1, 30, "the holder to take the slot")
        chats_before = backend_chats(backend)
        response = requests.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                                 json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2})
        assert response.status_code == 429, response.text
        assert re.search(r"queued \d+ s, backend busy", response.json()["error"]["message"])
        assert int(response.headers["retry-after"]) >= 1
        assert family(metrics(url), "llmops_queue_rejected_total", reason="timeout") == 1
        holder.result(timeout=120)
    wait_idle(url)
    assert backend_chats(backend) == chats_before + 1  # the holder's only (counted when it ends)


def test_the_request_log_has_each_requests_priority_and_queue_wait(impatient_proxy):
    import sqlite3

    url = impatient_proxy
    wait_idle(url)
    path = IMPATIENT_LOG[-1]
    with ThreadPoolExecutor(2) as pool:
        holder = pool.submit(hold, url)  # 300 tokens: seconds, well past QUEUE_TIMEOUT
        wait_for(lambda: busy(url) == 1, 30, "the holder to take the slot")
        refused = requests.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                                json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2,
                                      "priority": 7})
        assert refused.status_code == 429
        holder.result(timeout=120)

    def rows():
        if not path.exists():  # the writer makes the file with its first row
            return []
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT priority, queue_wait_ms, status FROM requests ORDER BY ts").fetchall()

    found = wait_for(lambda: (r := rows()) and {p for p, _, _ in r} >= {0, 7} and r, 30, "both rows in the log")
    by_priority = {p: (wait, status) for p, wait, status in found}
    assert by_priority[7][1] == 429 and by_priority[7][0] >= 1000  # waited the 1 s QUEUE_TIMEOUT, then refused
    assert by_priority[0][1] == 200 and by_priority[0][0] is not None and by_priority[0][0] < 1000
