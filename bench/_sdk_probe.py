"""The machine's speed at the time, in LiteLLM's own code: the median ms of Router.acompletion in a plain process
(no proxy) against the fake Ollama (a helper of bench/proxy_overhead.py, not a benchmark: bench.sh skips _*.py).

Usage: python -m bench._sdk_probe MODEL_LIST_JSON; prints the median in ms (400 calls, the first 100 not counted).
"""
from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

CALLS, WARMUP = 400, 100


async def median_ms(model_list: list) -> float:
    import litellm

    router = litellm.Router(model_list=model_list)
    times = []
    for i in range(CALLS):
        started = time.perf_counter()
        await router.acompletion(model="smollm2:135m", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        if i >= WARMUP:
            times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


if __name__ == "__main__":
    print(asyncio.run(median_ms(json.loads(sys.argv[1]))))
