"""The request log's own costs for bench/proxy_overhead.py (a helper, not a benchmark: bench.sh skips _*.py).

Rows written per second while a proxy is saturated, the writer thread alone, and the callback's own time per
request: figures a shared machine blurs less than it blurs end-to-end p50s.
"""
from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

WRITER_ROWS = 20_000
CALLBACK_EVENTS = 5_000


def count_rows(db: Path) -> int:
    """Rows in a request-log file, read-only (0 before the writer has created it)."""
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT count(*) FROM requests").fetchone()[0]


def writer_alone(db: Path, n: int = WRITER_ROWS) -> dict:
    """The writer thread on its own, fed as fast as it takes rows: how far it is from being the bottleneck."""
    from llmops.requestlog import writer

    alone = writer.Writer(db)
    rows = [{"call_id": f"bench-{i}", "ts": time.time(), "outcome": "ok", "status": 200, "model": "smollm2:135m",
             "kind": "chat", "attempts": 1, "rank": 3, "user_agent": "llmops-bench/1"} for i in range(n)]
    alone.start()
    started = time.perf_counter()
    for row in rows:
        while alone.queued() >= writer.QUEUE_ROWS:  # the writer's pace, not the queue's size
            time.sleep(0.001)
        alone.put(row)
    alone.close(timeout=120)
    return {"rows_per_s": round(n / (time.perf_counter() - started)), "rows": n, "dropped": alone.dropped,
            "rows_in_file": count_rows(db)}


def callback_us(db: Path, n: int = CALLBACK_EVENTS) -> float:
    """Microseconds the callback spends on the proxy's event loop per request (building the row, queueing it),
    with its writer thread running."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # importing LiteLLM must not try the network
    from llmops.proxy.plugins.requestlog import RANK_SUCCESS, RequestLog

    log = RequestLog(environ={"REQUEST_LOG_PATH": str(db)})
    now = time.time()
    slo = {"litellm_call_id": "", "call_type": "acompletion", "model_group": "smollm2:135m", "stream": False,
           "api_base": "http://127.0.0.1:11434/api/chat", "startTime": now, "endTime": now + 0.01,
           "completionStartTime": now + 0.01, "response_time": 0.01, "prompt_tokens": 9,
           "completion_tokens": 4, "metadata": {"user_api_key_hash": "h", "user_api_key_user_agent": "llmops-bench/1"},
           "response": {"choices": [{"finish_reason": "stop", "message": {"content": "ok"}}]}}
    kwargs = {"standard_logging_object": slo, "litellm_params": {"metadata": {},
              "proxy_server_request": {"body": {"model": "smollm2:135m"}, "headers": {}}}}
    started = time.perf_counter()
    for i in range(n):
        slo["litellm_call_id"] = f"cb-{i}"
        log._event(kwargs, None, RANK_SUCCESS)
    spent = time.perf_counter() - started
    log.writer().close(timeout=60)
    return round(spent / n * 1e6, 1)
