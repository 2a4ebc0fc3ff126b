"""The request log through the real LiteLLM proxy: one row per request for every outcome, failure contained.

The proxy runs in front of tests/support/fakes/requestlog.py (a FAKE Ollama that injects faults) so each outcome
is known: ok, a stream, a stream the client cuts, 400 (unknown model), 429 (max_parallel 1), 500 and a
timeout (408). Each test reads the SQLite file the proxy's callback writes.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from llmops.proxy.plugins.requestlog import CONTENT_CHARS
from llmops.requestlog import store, writer
from tests.support.fakes.requestlog import DRIBBLE, FAIL_ONCE, DribblingOllama
from tests.support.helpers import single_model_config, wait_for
from tests.support.processes import ManagedProcess
from tests.support.proxy import proxy_process

pytestmark = pytest.mark.integration
KEY = "sk-test-requestlog-9f3c2a"
MODEL = "smollm2:135m"
UA = "requestlog-test/1"


@dataclass
class Proxy:
    url: str
    process: ManagedProcess
    db: Path
    status_dir: Path
    state: Path

    @property
    def proc(self) -> subprocess.Popen:
        return self.process.proc

    def chat(self, content: str, model: str = MODEL, stream: bool = False, timeout: float = 30) -> requests.Response:
        return requests.post(f"{self.url}/v1/chat/completions", timeout=timeout, stream=stream,
                             headers={"Authorization": f"Bearer {KEY}", "User-Agent": UA},
                             json={"model": model, "messages": [{"role": "user", "content": content}],
                                   "max_tokens": 8, "stream": stream})

    def rows(self) -> dict[str, dict]:
        if not self.db.exists():
            return {}
        with store.connect_readonly(self.db) as conn:
            return {r["call_id"]: dict(r) for r in conn.execute("SELECT * FROM requests")}

    def wait_rows(self, ids, within: float = 15.0) -> dict[str, dict]:
        ids = set(ids)
        return wait_for(lambda: (rows := self.rows()) and ids <= rows.keys() and rows, within,
                        f"rows for {len(ids)} call ids")


def start_proxy(fake, tmp: Path, name: str, **extra: str) -> Proxy:
    # One model's own retries and outcomes: no fallback to the other chat model.
    process = proxy_process(tmp, KEY, name, OLLAMA_HOSTS=fake.url, REQUEST_LOG_PATH=str(tmp / f"{name}.db"),
                            LITELLM_CONFIG=single_model_config(tmp), **extra).start()
    return Proxy(process.url, process, tmp / f"{name}.db", tmp / f"state-{name}" / "requestlog", tmp / f"state-{name}")


def stop_proxy(proxy: Proxy) -> None:
    proxy.process.stop()


@pytest.fixture(scope="module")
def fake():
    with DribblingOllama() as server:
        yield server


@pytest.fixture(scope="module")
def proxies(fake, tmp_path_factory):
    """Two proxies started together: "one" (1 worker, no retries, 4 s timeout, max_parallel 1) and
    "two" (2 workers, 1 retry, content kept)."""
    tmp = tmp_path_factory.mktemp("requestlog")
    specs = {
        "one": {"LITELLM_WORKERS": "1", "LITELLM_NUM_RETRIES": "0", "LITELLM_TIMEOUT": "4",
                # LiteLLM's hard cap answers 429 when the queue lets more through than it (8 slots against 1).
                "LITELLM_MAX_PARALLEL": "1", "OLLAMA_NUM_PARALLEL": "8"},
        "two": {"LITELLM_WORKERS": "2", "LITELLM_NUM_RETRIES": "1", "LITELLM_TIMEOUT": "5",
                "REQUEST_LOG_CONTENT": "1"},
    }
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(start_proxy, fake, tmp, name, **spec) for name, spec in specs.items()}
        started = {name: f.result() for name, f in futures.items()}
    yield started
    for proxy in started.values():
        stop_proxy(proxy)


def test_each_outcome_is_one_row_with_its_class_and_fields(proxies, fake):
    proxy = proxies["one"]
    fake.reset()
    sent: dict[str, tuple[str, int]] = {}

    def send(case: str, response: requests.Response) -> requests.Response:
        sent[response.headers["x-litellm-call-id"]] = (case, response.status_code)
        return response

    send("ok", proxy.chat("hello"))
    stream = send("stream", proxy.chat("hello", stream=True))
    assert b"[DONE]" in stream.content
    send("unknown model", proxy.chat("hello", model="no-such-model"))
    fake.set_fault("http500", path="/api/chat")
    send("backend 500", proxy.chat("boom"))
    fake.set_fault("slow", delay=6.0, path="/api/chat")
    send("timeout", proxy.chat("slowly"))
    # Slow enough that the second request arrives while the first holds the only slot, on a busy machine too.
    fake.set_fault("slow", delay=2.0, path="/api/chat")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(proxy.chat, "first in line")
        wait_for(lambda: fake.attempts("first in line") >= 1, 10, "the first request at the backend")
        send("rate limited", proxy.chat("second"))
        send("ok after wait", first.result())
    fake.reset()
    cut = proxy.chat(DRIBBLE, stream=True)
    next(cut.iter_lines())  # the first chunk, then hang up
    cut.close()
    sent[cut.headers["x-litellm-call-id"]] = ("cut stream", 499)  # LiteLLM's status for a client that hung up

    by_case = {case: status for case, status in sent.values()}
    assert by_case == {"ok": 200, "stream": 200, "unknown model": 400, "backend 500": 500, "timeout": 408,
                       "rate limited": 429, "ok after wait": 200, "cut stream": 499}, by_case
    rows = proxy.wait_rows(sent)
    assert set(rows) == set(sent), "exactly one row per request, no other rows"
    want = {"ok": "ok", "stream": "ok", "unknown model": "client_error", "backend 500": "server_error",
            "timeout": "timeout", "rate limited": "rate_limited", "ok after wait": "ok", "cut stream": "client_error"}
    for call_id, (case, status) in sent.items():
        row = rows[call_id]
        assert (row["outcome"], row["status"]) == (want[case], status), (case, row)
        assert row["kind"] == "chat" and row["user_agent"] == UA, row
        assert row["key_hash"] and KEY not in str(row), row
        assert row["prompt"] is None and row["answer"] is None, "content is off by default"
        if want[case] == "ok":
            assert row["deployment"].startswith(fake.url) and row["model"] == MODEL, row
            assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0 and row["latency_ms"] > 0, row
            assert row["error_type"] is None, row
        else:
            assert row["error_type"] and row["error_message"], row
    named = {case: rows[cid] for cid, (case, _) in sent.items()}
    assert named["stream"]["stream"] == 1 and named["stream"]["ttft_ms"] > 0
    assert named["stream"]["finish_reason"] == "stop"
    assert named["unknown model"]["model"] == "no-such-model" and named["unknown model"]["deployment"] is None
    assert "max_parallel_requests" in named["rate limited"]["error_message"]
    assert named["timeout"]["error_type"] == "Timeout"
    assert "injected internal server error" in named["backend 500"]["error_message"]
    assert named["cut stream"]["error_type"] == "ClientDisconnected"
    assert named["cut stream"]["completion_tokens"] < 40, "the part streamed before the client hung up"


def test_key_and_content_are_not_in_the_database_file(proxies, fake):
    proxy = proxies["one"]
    fake.reset()
    nonce = uuid.uuid4().hex
    response = proxy.chat(f"secret prompt {nonce}")
    proxy.wait_rows([response.headers["x-litellm-call-id"]])
    blob = b"".join(p.read_bytes() for p in proxy.db.parent.glob(proxy.db.name + "*"))
    assert blob and KEY.encode() not in blob
    assert nonce.encode() not in blob


def test_locked_database_drops_rows_keeps_serving_and_says_degraded(proxies, fake, test_settings):
    from llmops.dashboard import create_app

    proxy = proxies["one"]
    fake.reset()
    settings = type(test_settings)(values={**test_settings.values, "LLMOPS_STATE_DIR": str(proxy.state),
                                           "REQUEST_LOG_PATH": str(proxy.db)}, env_file=test_settings.env_file)
    app = create_app({"SETTINGS": settings, "START_MONITOR": False}).test_client()
    assert app.get("/api/requests").get_json()["log"]["degraded"] is None
    locker = sqlite3.connect(str(proxy.db), timeout=5, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock past the writer's busy timeout
    try:
        answers = [proxy.chat(f"while locked {i}") for i in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        log = wait_for(lambda: (doc := app.get("/api/requests").get_json()["log"])["degraded"] and doc, 20,
                       "the dashboard to say the log is degraded")
        assert "locked" in log["degraded"] and log["dropped"] >= 1
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    dropped = requests.get(f"{proxy.url}/metrics/", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).text
    assert any(line.startswith("llmops_requestlog_dropped_rows_total ") and float(line.split()[1]) >= 1
               for line in dropped.splitlines()), "the dropped-rows counter is exported"
    after = proxy.chat("after the lock")
    try:
        proxy.wait_rows([after.headers["x-litellm-call-id"]], within=40)
    except AssertionError:
        print("status:", writer.read_status(proxy.status_dir), list(proxy.status_dir.glob("*")))
        raise
    wait_for(lambda: app.get("/api/requests").get_json()["log"]["degraded"] is None, 20, "the log to recover")


def test_two_workers_lose_and_double_no_row(proxies, fake):
    proxy = proxies["two"]
    fake.reset()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: proxy.chat(f"two workers {i}"), range(60)))
    assert {a.status_code for a in answers} == {200}
    ids = [a.headers["x-litellm-call-id"] for a in answers]
    assert len(set(ids)) == 60
    rows = proxy.wait_rows(ids)
    assert set(ids) <= set(rows)
    with store.connect_readonly(proxy.db) as conn:
        counts = dict(conn.execute("SELECT call_id, count(*) FROM requests GROUP BY call_id").fetchall())
    assert all(counts[i] == 1 for i in ids)
    assert len({rows[i]["worker_pid"] for i in ids}) == 2, "both workers served and wrote"


def test_a_retried_500_is_one_row_with_two_attempts_and_content_is_truncated(proxies, fake):
    proxy = proxies["two"]
    fake.reset()
    fake.set_fault("http500", path="/api/chat")
    failed = proxy.chat("boom twice")
    fake.reset()
    long_prompt = "y" * (CONTENT_CHARS * 3)
    ok = proxy.chat(long_prompt)
    assert (failed.status_code, ok.status_code) == (500, 200)
    rows = proxy.wait_rows([failed.headers["x-litellm-call-id"], ok.headers["x-litellm-call-id"]])
    bad, good = rows[failed.headers["x-litellm-call-id"]], rows[ok.headers["x-litellm-call-id"]]
    assert (bad["outcome"], bad["status"], bad["attempts"]) == ("server_error", 500, 2)
    assert "boom twice" in bad["prompt"]
    assert good["answer"] == "ok" and len(good["prompt"]) < CONTENT_CHARS + 100 and "more characters" in good["prompt"]


def test_a_success_after_a_failed_attempt_is_one_ok_row_with_two_attempts(proxies, fake):
    proxy = proxies["two"]
    fake.reset()
    answer = proxy.chat(f"{FAIL_ONCE} {uuid.uuid4().hex}")
    assert answer.status_code == 200 and fake.attempts(FAIL_ONCE) == 2
    call_id = answer.headers["x-litellm-call-id"]
    # The failed attempt's event may be written first: the row says so until the success merges in.
    row = wait_for(lambda: (r := proxy.rows().get(call_id)) and r["outcome"] == "ok" and r, 15, "the final row")
    assert (row["outcome"], row["status"], row["attempts"], row["error_type"]) == ("ok", 200, 2, None), row
    assert len([r for r in proxy.rows().values() if FAIL_ONCE in (r["prompt"] or "")]) == 1


def test_sigkill_under_load_loses_at_most_the_queued_rows_and_the_file_stays_sound(proxies, fake):
    proxy = proxies["two"]
    fake.reset()
    answered: list[tuple[float, str]] = []
    stop = threading.Event()

    def load():
        session = requests.Session()
        while not stop.is_set():
            try:
                r = session.post(f"{proxy.url}/v1/chat/completions", timeout=10,
                                 headers={"Authorization": f"Bearer {KEY}", "User-Agent": UA},
                                 json={"model": MODEL, "messages": [{"role": "user", "content": "load"}], "max_tokens": 4})
            except requests.RequestException:
                continue
            if r.status_code == 200:
                answered.append((time.monotonic(), r.headers["x-litellm-call-id"]))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    # Long enough that most answers are older than the window the kill may take, whatever the proxy's speed.
    window = writer.FLUSH_SECONDS + 1.0
    wait_for(lambda: len(answered) >= 100 and time.monotonic() - answered[0][0] >= 5 * window, 90,
             "100 answered requests over five kill windows")
    killed_at = time.monotonic()
    os.killpg(proxy.proc.pid, signal.SIGKILL)
    proxy.proc.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(15)
    before = [(at, cid) for at, cid in answered if at <= killed_at]
    with sqlite3.connect(str(proxy.db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        logged = {r[0] for r in conn.execute("SELECT call_id FROM requests")}
    missing = [(at, cid) for at, cid in before if cid not in logged]
    # A row waits at most FLUSH_SECONDS in the queue, plus a batch's write: what the kill (window) can take.
    recent = [cid for at, cid in before if at > killed_at - window]
    print(f"answered before the kill: {len(before)}, missing rows: {len(missing)}, answered in the last {window} s: {len(recent)}")
    assert len(recent) < len(before) / 2, "the load ran long enough for the window to mean something"
    assert all(at > killed_at - window for at, _ in missing), "only rows still queued at the kill may be missing"
