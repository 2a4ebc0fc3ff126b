"""A fault run through the queue: clients that hang up at random points and the backend killed mid-stream.

Afterwards the queue's busy count and waiting count are back at 0: every slot given back on every path.
"""
from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.support.backend import BackendProcess
from tests.support.helpers import wait_for
from tests.support.proxy import real_proxy
from tests.support.queue import CONFIG, HOLD_PROMPT, KEY, busy, client, waiting

pytestmark = pytest.mark.integration


def test_after_random_hang_ups_and_a_backend_killed_mid_stream_every_slot_is_back(tmp_path):
    (tmp_path / "litellm_config.yaml").write_text(CONFIG)
    backend = BackendProcess("--num-parallel", "2")
    rng = random.Random(24)
    try:
        with real_proxy(tmp_path, KEY, OLLAMA_HOSTS=backend.url, REQUEST_LOG="0", BACKEND_NUM_PARALLEL="2",
                        LITELLM_CONFIG=str(tmp_path / "litellm_config.yaml"), LITELLM_NUM_RETRIES="0",
                        QUEUE_TIMEOUT="120") as url:
            streaming = threading.Semaphore(0)

            def one(i: int) -> str:
                keep = rng.choice([1, 3, 10**6])  # chunks read before hanging up; 10**6: read to the end
                try:
                    stream = client(url, 60).chat.completions.create(
                        model="smollm2:135m", messages=[{"role": "user", "content": HOLD_PROMPT}], max_tokens=200,
                        temperature=0, stream=True, extra_body={"priority": i % 3})
                    for n, _ in enumerate(stream):
                        streaming.release()
                        if n >= keep:
                            stream.close()
                            return "hung up"
                    return "done"
                except (openai.APIError, openai.APIConnectionError) as exc:
                    return type(exc).__name__

            with ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(one, i) for i in range(8)]
                wait_for(lambda: streaming.acquire(blocking=False), 60, "a stream to be under way")
                wait_for(lambda: busy(url) == 2, 60, "both slots busy")
                backend.kill()  # mid-stream: the running generations end in errors, the waiting ones fail after
                outcomes = [f.result(timeout=180) for f in futures]
            wait_for(lambda: busy(url) == 0 and waiting(url) == 0, 60, "the queue to give every slot back")
            assert any(o not in ("done", "hung up") for o in outcomes), outcomes  # the kill did cut some
    finally:
        backend.stop()
