"""Queueing, the 503 bound, client disconnects and metrics, against FakeEngine (a stand-in for llama.cpp)."""
from __future__ import annotations

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from llmops.backend import BUSY_MESSAGE, create_app
from llmops.backend.handling import BACKEND_KEY
from tests.support.fakes.backend import FAKE_TAG, FakeEngine, ServerThread, expected_text, wait_for

CHAT = {"model": FAKE_TAG, "messages": [{"role": "user", "content": "hi"}]}


def metrics(server) -> dict[tuple, float]:
    """{(sample name, sorted label items): value} from the server's /metrics."""
    text = requests.get(server.url + "/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def gauge(server, name: str) -> float:
    return metrics(server)[(name, ())]


def serve(tmp_path, max_queue=4, **kw):
    engine = FakeEngine(tmp_path / "fake.gguf", **kw)
    srv = ServerThread(create_app(engine, max_queue=max_queue))
    srv.engine = engine
    return srv


def raw_request(url: str, path: str, body: dict) -> socket.socket:
    """Send a POST on a raw socket (so the test decides when the client disconnects)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    data = json.dumps(body).encode()
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode() + data
    )
    return sock


def hold_engine(srv, pool):
    """A one-token chat that holds the engine until the test sets the server's gate; returns its future."""
    busy = pool.submit(requests.post, srv.url + "/api/chat",
                       json={**CHAT, "stream": False, "options": {"num_predict": 1}}, timeout=20)
    wait_for(srv.engine.started.is_set, what="the generation that holds the engine")
    return busy


def test_past_the_queue_bound_requests_get_503_with_ollamas_message(tmp_path):
    gate = threading.Event()
    with serve(tmp_path, max_queue=1, gate=gate) as srv, ThreadPoolExecutor(2) as pool:
        def chat():
            return requests.post(srv.url + "/api/chat", json={**CHAT, "stream": False, "options": {"num_predict": 2}}, timeout=20)

        first = pool.submit(chat)
        wait_for(srv.engine.started.is_set, what="first generation to start")
        second = pool.submit(chat)
        wait_for(lambda: gauge(srv, "llm_backend_queue_depth") == 1, what="second request to queue")
        assert gauge(srv, "llm_backend_in_flight") == 1

        third = requests.post(srv.url + "/api/chat", json=CHAT, timeout=5)
        assert third.status_code == 503
        assert third.json() == {"error": BUSY_MESSAGE}
        assert BUSY_MESSAGE == "server busy, please try again.  maximum pending requests exceeded"

        gate.set()
        for done in (first.result(10), second.result(10)):
            assert done.status_code == 200 and done.json()["message"]["content"] == expected_text(2)
        seen = metrics(srv)
        assert seen[("llm_backend_rejected_total", ())] == 1
        assert seen[("llm_backend_requests_total", (("endpoint", "/api/chat"), ("status", "503")))] == 1
        assert seen[("llm_backend_requests_total", (("endpoint", "/api/chat"), ("status", "200")))] == 2
        assert seen[("llm_backend_queue_depth", ())] == 0


def test_requests_run_one_at_a_time_in_arrival_order(tmp_path):
    gate = threading.Event()
    with serve(tmp_path, gate=gate) as srv, ThreadPoolExecutor(4) as pool:
        def chat(name):
            body = {**CHAT, "stream": False, "messages": [{"role": "user", "content": name}], "options": {"num_predict": 1}}
            return requests.post(srv.url + "/api/chat", json=body, timeout=20)

        futures = [pool.submit(chat, "a")]
        wait_for(srv.engine.started.is_set, what="first generation")
        for i, name in enumerate(["b", "c", "d"], start=1):
            futures.append(pool.submit(chat, name))
            wait_for(lambda i=i: gauge(srv, "llm_backend_queue_depth") == i, what=f"{name} to queue")
        gate.set()
        assert all(f.result(10).status_code == 200 for f in futures)
    assert srv.engine.prompts == [f"<user>{name}<assistant>" for name in "abcd"]


@pytest.mark.parametrize("path, body", [
    ("/api/chat", CHAT),
    ("/api/generate", {"model": FAKE_TAG, "prompt": "hi"}),
    ("/v1/chat/completions", {**CHAT, "stream": True}),
])
def test_client_disconnect_mid_stream_stops_the_generation_and_frees_the_slot(tmp_path, path, body):
    # 100 000 tokens at 5 ms each would hold the engine for minutes if nobody stopped it.
    with serve(tmp_path, token_delay=0.005) as srv:
        sock = raw_request(srv.url, path, {**body, "options": {"num_predict": 100_000}, "max_tokens": 100_000})
        received = b""
        while received.count(b"w1") < 1:
            received += sock.recv(4096)
        assert b"200 OK" in received
        sock.close()
        wait_for(srv.engine.finished.is_set, timeout=5, what="the generation to stop after the disconnect")
        assert srv.engine.last_sampler.count < 1000
        wait_for(lambda: gauge(srv, "llm_backend_in_flight") == 0, what="the slot to free")

        after = requests.post(srv.url + "/api/chat", json={**CHAT, "stream": False, "options": {"num_predict": 2}}, timeout=10)
        assert after.status_code == 200
        status = wait_for(
            lambda: metrics(srv).get(("llm_backend_requests_total", (("endpoint", path), ("status", "499")))),
            what="the disconnect to be counted as 499",
        )
        assert status == 1


def test_client_disconnect_of_a_non_streamed_request_stops_the_generation(tmp_path):
    with serve(tmp_path, token_delay=0.005) as srv:
        sock = raw_request(srv.url, "/api/chat", {**CHAT, "stream": False, "options": {"num_predict": 100_000}})
        wait_for(srv.engine.started.is_set, what="the generation to start")
        sock.close()
        wait_for(srv.engine.finished.is_set, timeout=5, what="the generation to stop after the disconnect")
        assert srv.engine.last_sampler.count < 100_000 and srv.engine.cells[0] == set()  # cancelled: cells given back
        wait_for(lambda: gauge(srv, "llm_backend_in_flight") == 0, what="the slot to free")


def test_client_that_leaves_the_queue_is_not_run(tmp_path):
    gate = threading.Event()
    with serve(tmp_path, gate=gate) as srv, ThreadPoolExecutor(1) as pool:
        first = hold_engine(srv, pool)
        queued = raw_request(srv.url, "/api/chat", {**CHAT, "stream": False})
        wait_for(lambda: gauge(srv, "llm_backend_queue_depth") == 1, what="second request to queue")
        queued.close()
        wait_for(lambda: gauge(srv, "llm_backend_queue_depth") == 0, what="the queued request to leave")
        gate.set()
        assert first.result(10).status_code == 200
        wait_for(lambda: gauge(srv, "llm_backend_in_flight") == 0, what="the engine to go idle")
        assert srv.engine.calls == 1


def test_metrics_use_the_agreed_names_and_count_tokens(tmp_path):
    with serve(tmp_path) as srv:
        requests.post(srv.url + "/api/generate", json={"model": FAKE_TAG, "prompt": "a b c", "raw": True,
                                                       "stream": False, "options": {"num_predict": 7}}, timeout=10)
        seen = metrics(srv)
    model = (("model", FAKE_TAG),)
    assert seen[("llm_backend_prompt_tokens_total", model)] == 3
    assert seen[("llm_backend_output_tokens_total", model)] == 7
    assert seen[("llm_backend_time_to_first_token_seconds_count", model)] == 1
    assert seen[("llm_backend_generation_seconds_count", model)] == 1
    assert seen[("llm_backend_requests_total", (("endpoint", "/api/generate"), ("status", "200")))] == 1
    for name in ("llm_backend_queue_depth", "llm_backend_in_flight", "llm_backend_rejected_total"):
        assert (name, ()) in seen
    assert ("process_resident_memory_bytes", ()) in seen


def test_shutdown_stops_a_running_generation(tmp_path):
    srv = serve(tmp_path, token_delay=0.005)
    with ThreadPoolExecutor(1) as pool, srv:  # the server shuts down first, while the request runs
        pending = pool.submit(requests.post, srv.url + "/api/chat",
                              json={**CHAT, "options": {"num_predict": 100_000}}, timeout=20)
        wait_for(srv.engine.started.is_set, what="the generation to start")
    # Leaving the block shut the server down; the generation must not run on for nobody.
    assert srv.engine.finished.wait(5)
    assert srv.engine.last_sampler.count < 10_000
    lines = pending.result(10).text.splitlines()
    assert "error" in json.loads(lines[-1])


def embed(url: str, text: str, **extra) -> dict:
    response = requests.post(url + "/api/embed", json={"model": FAKE_TAG, "input": text, **extra}, timeout=20)
    assert response.status_code == 200, response.text
    return response.json()


def test_embedding_requests_that_wait_together_run_as_one_batch(tmp_path):
    gate = threading.Event()
    texts = ["one small cat", "two dogs", "three birds in a tree"]
    with serve(tmp_path, gate=gate) as srv, ThreadPoolExecutor(4) as pool:
        batcher = srv.app[BACKEND_KEY].embed_batches
        busy = hold_engine(srv, pool)
        futures = [pool.submit(embed, srv.url, text) for text in texts]
        wait_for(lambda: batcher.gathering(FAKE_TAG) == 3, what="three embedding requests to gather")
        assert gauge(srv, "llm_backend_queue_depth") == 1  # one queue place for the batch
        gate.set()
        replies = [f.result(10) for f in futures]
        assert busy.result(10).status_code == 200
        assert len(srv.engine.embed_calls) == 1 and sorted(srv.engine.embed_calls[0]) == sorted(texts)
        for text, reply in zip(texts, replies, strict=True):
            alone = embed(srv.url, text)  # the engine is idle now: a batch of one
            assert reply["embeddings"] == alone["embeddings"] and len(reply["embeddings"]) == 1
            assert reply["prompt_eval_count"] == len(text.split()) == alone["prompt_eval_count"]
        assert srv.engine.embed_calls[1:] == [[text] for text in texts]
        assert metrics(srv)[("llm_backend_jobs_total", (("kind", "embed"),))] == 6


def test_an_embedding_request_that_must_not_be_truncated_runs_alone_with_its_own_error(tmp_path):
    gate = threading.Event()
    with serve(tmp_path, gate=gate) as srv, ThreadPoolExecutor(4) as pool:
        busy = hold_engine(srv, pool)
        ok = pool.submit(embed, srv.url, "short text")
        too_long = pool.submit(requests.post, srv.url + "/api/embed", timeout=20, json={
            "model": FAKE_TAG, "input": "word " * (srv.engine.n_ctx + 1), "truncate": False})
        wait_for(lambda: gauge(srv, "llm_backend_queue_depth") == 2, what="both to queue, each in its own place")
        gate.set()
        assert len(ok.result(10)["embeddings"]) == 1
        assert too_long.result(10).status_code == 400
        assert busy.result(10).status_code == 200


def test_an_embedding_batch_whose_clients_all_left_leaves_the_queue(tmp_path):
    gate = threading.Event()
    with serve(tmp_path, gate=gate) as srv, ThreadPoolExecutor(1) as pool:
        batcher = srv.app[BACKEND_KEY].embed_batches
        first = hold_engine(srv, pool)
        queued = [raw_request(srv.url, "/api/embed", {"model": FAKE_TAG, "input": t}) for t in ("a b", "c d")]
        wait_for(lambda: batcher.gathering(FAKE_TAG) == 2, what="two embedding requests to gather")
        queued[0].close()
        gone = ("llm_backend_requests_total", (("endpoint", "/api/embed"), ("status", "499")))
        wait_for(lambda: metrics(srv).get(gone) == 1, what="the first client's leaving to be counted")
        assert gauge(srv, "llm_backend_queue_depth") == 1  # the other client still waits for the batch
        queued[1].close()
        wait_for(lambda: gauge(srv, "llm_backend_queue_depth") == 0, what="the batch to leave the queue")
        gate.set()
        assert first.result(10).status_code == 200
        wait_for(lambda: gauge(srv, "llm_backend_in_flight") == 0, what="the engine to go idle")
        assert srv.engine.embed_calls == []


def serve_slots(tmp_path, n_slots=4, max_queue=4, **kw):
    return serve(tmp_path, max_queue=max_queue, n_slots=n_slots, **kw)


def stream_chat(url: str, name: str, n: int, events: list, lock: threading.Lock) -> str:
    """Stream a chat; record (name, "first"|"done", order) as its first token and its end arrive."""
    body = {**CHAT, "messages": [{"role": "user", "content": name}], "options": {"num_predict": n}}
    text = ""
    with requests.post(url + "/api/chat", json=body, stream=True, timeout=30) as response:
        for line in response.iter_lines():
            chunk = json.loads(line)
            if not chunk["done"]:
                if not text:
                    with lock:
                        events.append((name, "first"))
                text += chunk["message"]["content"]
    with lock:
        events.append((name, "done"))
    return text


def test_four_streams_run_at_once_and_their_tokens_interleave(tmp_path):
    events: list = []
    lock = threading.Lock()
    with serve_slots(tmp_path, token_delay=0.01) as srv, ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(stream_chat, srv.url, name, 30, events, lock) for name in "abcd"]
        texts = [f.result(30) for f in futures]
        seen = metrics(srv)
    assert texts == [expected_text(30)] * 4
    first_done = min(i for i, (_, kind) in enumerate(events) if kind == "done")
    assert {name for name, kind in events[:first_done] if kind == "first"} == set("abcd")
    # The engine decoded several sequences in one step (the fake's batches say which).
    assert max(len(batch) for batch in srv.engine.batches) >= 2
    assert seen[("llm_backend_batch_size_count", (("model", FAKE_TAG),))] == len(srv.engine.batches)
    assert seen[("llm_backend_slots", (("model", FAKE_TAG),))] == 4


def test_requests_beyond_the_slots_wait_and_take_a_slot_when_one_frees(tmp_path):
    gate = threading.Event()
    with serve_slots(tmp_path, n_slots=2, gate=gate) as srv, ThreadPoolExecutor(3) as pool:
        def chat(name):
            body = {**CHAT, "stream": False, "messages": [{"role": "user", "content": name}], "options": {"num_predict": 2}}
            return requests.post(srv.url + "/api/chat", json=body, timeout=20)

        running = [pool.submit(chat, name) for name in "ab"]
        wait_for(lambda: gauge(srv, "llm_backend_in_flight") == 2, what="two sequences in the two slots")
        waiting = pool.submit(chat, "c")
        wait_for(lambda: gauge(srv, "llm_backend_queue_depth") == 1, what="the third request to wait for a slot")
        gate.set()
        assert all(f.result(10).json()["message"]["content"] == expected_text(2) for f in running + [waiting])
        wait_for(lambda: gauge(srv, "llm_backend_in_flight") == 0, what="the slots to free")
        busy = metrics(srv)[("llm_backend_slots_busy", (("model", FAKE_TAG),))]
    assert busy == 0 and srv.engine.calls == 3


def test_a_client_that_leaves_mid_batch_frees_its_slot_and_cells_and_the_others_go_on(tmp_path):
    events: list = []
    lock = threading.Lock()
    with serve_slots(tmp_path, n_slots=2, token_delay=0.005) as srv, ThreadPoolExecutor(1) as pool:
        other = pool.submit(stream_chat, srv.url, "other", 200, events, lock)
        wait_for(lambda: events, what="the other stream's first token")
        sock = raw_request(srv.url, "/api/chat", {**CHAT, "options": {"num_predict": 100_000}})
        received = b""
        while b"w3" not in received:
            received += sock.recv(4096)
        sock.close()
        wait_for(lambda: gauge(srv, "llm_backend_in_flight") == 1, timeout=5, what="the left stream's slot to free")
        assert other.result(30) == expected_text(200)
        gone = [s for s in srv.engine.samplers if s.opts.num_predict == 100_000]
        assert len(gone) == 1 and gone[0].freed and gone[0].count < 100_000
        left_slot = gone[0].seen[0][0]
        assert srv.engine.cells[left_slot] == set()  # its KV cells were given back
        wait_for(lambda: gauge(srv, "llm_backend_in_flight") == 0, what="both slots to free")


def test_an_unload_waits_for_the_models_running_sequences(tmp_path):
    gate = threading.Event()
    with serve_slots(tmp_path, n_slots=2, gate=gate) as srv, ThreadPoolExecutor(2) as pool:
        running = pool.submit(requests.post, srv.url + "/api/chat",
                              json={**CHAT, "stream": False, "options": {"num_predict": 3}}, timeout=20)
        wait_for(srv.engine.started.is_set, what="the generation to start")
        unload = pool.submit(requests.post, srv.url + "/api/generate", json={"model": FAKE_TAG, "keep_alive": 0},
                             timeout=20)
        wait_for(lambda: srv.app[BACKEND_KEY].scheduler.pool(FAKE_TAG).waiting == 1, what="the unload to wait")
        assert not srv.engine.closed
        gate.set()
        assert running.result(10).json()["message"]["content"] == expected_text(3)
        assert unload.result(10).json()["done_reason"] == "unload"
    assert srv.engine.closed


def test_a_client_that_times_out_while_its_sequence_waits_on_the_engine_gives_back_its_slot(tmp_path):
    gate = threading.Event()
    with serve_slots(tmp_path, n_slots=2, gate=gate) as srv:
        body = {**CHAT, "stream": False, "options": {"num_predict": 100_000}}
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(srv.url + "/api/chat", json=body, timeout=(5, 0.3))
        assert srv.engine.started.is_set()  # it had its slot and sampler when the client gave up
        gate.set()
        wait_for(lambda: gauge(srv, "llm_backend_in_flight") == 0, timeout=5, what="the timed-out sequence to end")
        left = srv.engine.samplers[0]
        assert left.freed and left.count < 100_000 and srv.engine.cells[left.seen[0][0]] == set()
        assert srv.app[BACKEND_KEY].scheduler.pool(FAKE_TAG).used == 0
        again = requests.post(srv.url + "/api/chat", json={**CHAT, "stream": False, "options": {"num_predict": 2}}, timeout=10)
        assert again.json()["message"]["content"] == expected_text(2)


def test_a_decode_error_answers_500_in_ollamas_shape_and_gives_back_the_slot(tmp_path):
    with serve_slots(tmp_path, n_slots=2) as srv:
        srv.engine.fail_next_decode = RuntimeError("llama_decode returned -1")
        failed = requests.post(srv.url + "/api/chat", json={**CHAT, "stream": False, "options": {"num_predict": 3}}, timeout=10)
        assert failed.status_code == 500 and "llama_decode returned -1" in failed.json()["error"]
        wait_for(lambda: gauge(srv, "llm_backend_in_flight") == 0, timeout=5, what="the failed sequence to leave")
        assert srv.app[BACKEND_KEY].scheduler.pool(FAKE_TAG).used == 0
        assert all(cells == set() for cells in srv.engine.cells.values())
        again = requests.post(srv.url + "/api/chat", json={**CHAT, "stream": False, "options": {"num_predict": 2}}, timeout=10)
        assert again.json()["message"]["content"] == expected_text(2)  # the service stays up
