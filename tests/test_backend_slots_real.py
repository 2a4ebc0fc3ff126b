"""The embedded backend's parallel slots with the real model (SmolLM2-135M, 4 slots): streams whose tokens
interleave, greedy answers that do not depend on the batch, JSON beside free text, a client that leaves
mid-batch, and the official ollama client (directly) and openai client (through the real proxy), several
requests at once. Short answers: this file runs in CI on 2 cores."""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import ollama
import openai
import pytest
import requests

from tests.support.backend import BackendProcess
from tests.support.helpers import wait_for
from tests.support.proxy import real_proxy
from tests.support.queue import family

pytestmark = pytest.mark.integration

SMOL = "smollm2:135m"
SLOTS, NUM_CTX = 4, 512
# Raw prompts a greedy SmolLM2 goes on counting from, so each stream runs to its num_predict.
COUNTING = [f"Count from {n} to 200, separated by commas: {n}, {n + 1}, {n + 2}," for n in (1, 20, 40, 60)]
QUESTIONS = ["Why is the sky blue?", "Name three fruits.", "What is a bicycle?", "How do bees make honey?"]


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    proc = BackendProcess("--num-parallel", str(SLOTS), "--num-ctx", str(NUM_CTX), "--no-access-log",
                          "--models-dir", str(tmp_path_factory.mktemp("models")))
    try:
        ollama.Client(host=proc.url, timeout=120).generate(model=SMOL, prompt="Hi", options={"num_predict": 1})
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def client(backend):
    return ollama.Client(host=backend.url, timeout=120)


def scrape(backend) -> str:
    return requests.get(backend.url + "/metrics", timeout=5).text


def batched_steps(backend) -> float:
    """Decode steps so far that held more than one sequence (llm_backend_batch_size)."""
    text = scrape(backend)
    return (family(text, "llm_backend_batch_size_count", model=SMOL)
            - family(text, "llm_backend_batch_size_bucket", model=SMOL, le="1.0"))


def wait_idle(backend) -> str:
    """Wait until no slot is busy and no sequence runs; returns that scrape."""
    def idle():
        text = scrape(backend)
        busy = family(text, "llm_backend_slots_busy", model=SMOL) + family(text, "llm_backend_in_flight")
        return text if busy == 0 else None

    return wait_for(idle, 30, "the slots to be idle (llm_backend_slots_busy 0, llm_backend_in_flight 0)")


def together(calls) -> list:
    """Run the calls in threads released at the same moment; their results in order."""
    start = threading.Barrier(len(calls))

    def run(call):
        start.wait(30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [f.result(120) for f in futures]


def streamed(client, events: list, name: str, prompt: str, tokens: int):
    """One raw /api/generate streamed with the ollama client; events get (name, "first") and (name, "done")."""
    text, last = "", None
    for part in client.generate(model=SMOL, prompt=prompt, raw=True, stream=True,
                                options={"temperature": 0, "seed": 1, "num_predict": tokens}):
        if part.response and not text:
            events.append((name, "first"))
        text += part.response
        last = part
    events.append((name, "done"))
    return text, last


# -- batching -----------------------------------------------------------------------------------
def test_four_streams_from_the_ollama_client_interleave(backend, client):
    events: list = []  # list.append is atomic: the order is the order the tokens arrived in
    before = batched_steps(backend)
    results = together([lambda i=i: streamed(client, events, str(i), COUNTING[i], 24) for i in range(4)])
    first_done = next(i for i, (_, kind) in enumerate(events) if kind == "done")
    assert {name for name, kind in events[:first_done] if kind == "first"} == {"0", "1", "2", "3"}, events
    for text, last in results:
        assert last.done and last.done_reason == "length" and last.eval_count == 24 and text.strip()
    assert batched_steps(backend) > before  # steps really decoded several sequences at once
    wait_idle(backend)


def test_greedy_answers_alone_and_in_a_batch_of_four_are_equal(backend, client):
    def ask(question: str) -> str:
        return client.chat(model=SMOL, messages=[{"role": "user", "content": question}],
                           options={"temperature": 0, "seed": 1, "num_predict": 16}).message.content

    alone = [ask(q) for q in QUESTIONS]
    before = batched_steps(backend)
    batched = together([lambda q=q: ask(q) for q in QUESTIONS])
    assert batched_steps(backend) > before
    assert batched == alone and all(alone)


def test_json_mode_in_one_slot_and_free_text_in_another_at_once(backend, client):
    events: list = []
    prompt = 'Give a JSON object with one key "colour" naming the colour of the sky.'
    before = batched_steps(backend)

    def json_reply():
        return client.generate(model=SMOL, prompt=prompt, format="json", options={"num_predict": 200, "seed": 2})

    reply, (text, last) = together([json_reply, lambda: streamed(client, events, "free", COUNTING[0], 48)])
    assert reply.done_reason == "stop" and isinstance(json.loads(reply.response), dict), reply.response
    assert last.eval_count == 48 and "," in text  # the free text is not held to the JSON grammar
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert batched_steps(backend) > before


def test_a_client_leaving_mid_batch_frees_its_slot_and_cells_and_the_others_finish(backend, client):
    events: list = []
    left = threading.Event()

    def leaver():
        body = {"model": SMOL, "prompt": COUNTING[3], "raw": True, "options": {"temperature": 0, "num_predict": 400}}
        with requests.post(backend.url + "/api/generate", json=body, stream=True, timeout=60) as response:
            for n, _ in enumerate(response.iter_lines()):
                if n == 3:
                    break  # the context manager closes the connection with the answer half read
        left.set()

    def gone() -> float:
        return family(scrape(backend), "llm_backend_requests_total", endpoint="/api/generate", status="499")

    was_gone = gone()
    results = together([leaver] + [lambda i=i: streamed(client, events, str(i), COUNTING[i], 32) for i in range(3)])
    assert left.is_set()
    wait_for(lambda: gone() == was_gone + 1, 30, "the backend to count the request that left (status 499)")
    finished = results[1:]
    for text, last in finished:
        assert last.done_reason == "length" and last.eval_count == 32 and text.strip()
    text = wait_idle(backend)
    assert family(text, "llm_backend_slots", model=SMOL) == SLOTS
    # The cells left are the three finished answers' (prompt and answer, less the last token, never
    # evaluated): the leaver's were given back.
    held = round(family(text, "llm_backend_kv_cache_usage_ratio", model=SMOL) * SLOTS * NUM_CTX)
    assert held == sum(last.prompt_eval_count + last.eval_count - 1 for _, last in finished)


# -- the official openai client through the real proxy --------------------------------------------
def test_the_openai_client_through_the_real_proxy_streams_four_at_once(backend, tmp_path):
    key = "sk-test-slots-real"
    with real_proxy(tmp_path, key, OLLAMA_HOSTS=backend.url) as url:
        api = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=120)
        api.chat.completions.create(model=SMOL, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)

        def chat(question: str) -> tuple[str, str | None]:
            text, reason = "", None
            for chunk in api.chat.completions.create(model=SMOL, stream=True, max_tokens=24, temperature=0,
                                                     messages=[{"role": "user", "content": question}]):
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    reason = chunk.choices[0].finish_reason or reason
            return text, reason

        before = batched_steps(backend)
        answers = together([lambda q=q: chat(q) for q in QUESTIONS])
        assert all(text.strip() and reason in ("stop", "length") for text, reason in answers), answers
        assert batched_steps(backend) > before  # the proxy let them through together: the backend batched them
    wait_idle(backend)
