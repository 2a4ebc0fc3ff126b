"""The queue shared by two proxy workers through the real redis-server, in front of the real embedded backend.

The backend serves one request at a time and queues the rest itself (llm_backend_queue_depth): with the queue
shared, no request ever waits in the backend, whichever worker took it, and priority holds across the workers.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.backend import BackendProcess
from tests.support.helpers import wait_for
from tests.support.queue import CONFIG, KEY, busy, chat, hold, waiting
from tests.support.redis import real_redis

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from tests.support.proxy import real_proxy

    tmp = tmp_path_factory.mktemp("queue-workers")
    (tmp / "litellm_config.yaml").write_text(CONFIG)
    backend = BackendProcess("--num-parallel", "1")
    try:
        with real_redis(tmp) as redis_url, \
                real_proxy(tmp, KEY, OLLAMA_HOSTS=backend.url, REQUEST_LOG="0", LITELLM_WORKERS="2", BACKEND_NUM_PARALLEL="1",
                           REDIS_URL=redis_url, LITELLM_CONFIG=str(tmp / "litellm_config.yaml")) as url:
            yield url, backend, redis_url
    finally:
        backend.stop()


def backend_queue_depth(backend) -> float:
    text = requests.get(f"{backend.url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("llm_backend_queue_depth"))


def test_two_workers_send_the_backend_no_more_than_its_slot_and_keep_priority(stack):
    url, backend, _ = stack
    finished: list[str] = []
    lock = threading.Lock()
    deepest = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            deepest.append(backend_queue_depth(backend))
            stop.wait(0.02)

    def run(name: str, priority: int):
        chat(url, f"Say {name}", max_tokens=4, priority=priority)
        with lock:
            finished.append(name)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(10) as pool:
            holder = pool.submit(hold, url)
            wait_for(lambda: busy(url) == 1, 60, "the holder to take the slot")
            lows = [pool.submit(run, f"low{i}", 9) for i in range(6)]
            wait_for(lambda: waiting(url) == 6, 60, "6 low-priority requests waiting (both workers' count, once)")
            high = pool.submit(run, "high", 0)
            for future in [holder, high, *lows]:
                future.result(timeout=180)
    finally:
        stop.set()
        watcher.join(5)
    assert finished[0] == "high", f"order of completion: {finished}"
    assert len(deepest) > 50 and max(deepest) == 0, f"requests waited in the backend: {max(deepest)}"
    wait_for(lambda: busy(url) == 0 and waiting(url) == 0, 30, "the shared queue to be idle")
