"""A misbehaving backend (slow, 500, malformed JSON, cut streams, 10 MB, resets) through the real LiteLLM proxy and the probes.

Measured with LiteLLM 1.108.7 against tests/support/fakes/ollama.py, num_retries 1:
- 500, malformed JSON, a cut non-streamed body, a reset and a timeout are all retried: the backend
  sees num_retries + 1 attempts. 500 / malformed / cut / reset reach the client as HTTP 500 with a
  JSON error; a timeout as HTTP 408. A streamed request that fails before its first chunk gets the
  same JSON error (not an event stream).
- Once a stream has started LiteLLM does not retry, and it hides the damage: an NDJSON stream cut
  mid-object, one that never says done:true, and one whose only line is not JSON all end with
  finish_reason "stop" and [DONE] and HTTP 200. The client cannot tell a cut answer from a short one.
- A single deployment is never cooled down (allowed_fails / cooldown_time only act when the model
  group has another deployment to send to): the request after a failure is served at once.
- 10 MB answers and 10 MB prompts pass through whole.
"""
from __future__ import annotations

import json
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import pytest
import requests

from llmops import health as probes
from llmops.dashboard.monitor import Check, Monitor
from tests.support.env import ROOT
from tests.support.fakes.ollama import HUGE_BYTES, MODEL, FakeOllama
from tests.support.helpers import single_model_config
from tests.support.processes import ManagedProcess
from tests.support.proxy import proxy_process

KEY = "sk-test-backend-faults"
RETRIES = 1
SHORT_TIMEOUT = 2.0   # LITELLM_TIMEOUT of the proxy most cases go through
LONG_TIMEOUT = 10.0   # a second proxy, for "5 s is slow but within the timeout"
# LiteLLM 1.108.7 sleeps min(0.5 * 2**k, 8) s plus up to 0.75 s jitter before retry k (a single
# deployment; litellm/utils.py calculate_retry_after); slack covers start-up of each call on 2 busy cores.
SLACK = 5.0
RESULTS = ROOT / "test-artifacts" / "backend_faults.json"


def backoff(retries: int = RETRIES) -> float:
    return sum(min(0.5 * 2**k, 8.0) + 0.75 for k in range(1, retries + 1))


def bound(timeout: float, retries: int = RETRIES) -> float:
    """The longest a request may take by the config: every attempt times out, plus the back-off."""
    return timeout * (retries + 1) + backoff(retries) + SLACK


@dataclass
class Proxy:
    url: str
    timeout: float
    process: ManagedProcess


@dataclass
class Outcome:
    """What the client got and what the backend saw for one request."""

    fault: str
    stream: bool
    status: int
    attempts: int
    seconds: float
    body: bytes

    def error(self) -> dict:
        body = json.loads(self.body)
        assert isinstance(body.get("error"), dict), body
        return body["error"]

    def chunks(self) -> list[dict]:
        """The event stream's data objects, checking it ends with [DONE]."""
        events = [line[len(b"data: "):] for line in self.body.splitlines() if line.startswith(b"data: ")]
        assert events and events[-1] == b"[DONE]", self.body[-300:]
        return [json.loads(e) for e in events[:-1]]

    def text(self) -> str:
        if self.stream:
            return "".join(c["choices"][0]["delta"].get("content") or "" for c in self.chunks())
        return json.loads(self.body)["choices"][0]["message"]["content"]

    def finish_reason(self) -> str | None:
        if self.stream:
            return next((c["choices"][0].get("finish_reason") for c in reversed(self.chunks())
                         if c["choices"][0].get("finish_reason")), None)
        return json.loads(self.body)["choices"][0]["finish_reason"]


def start_proxy(fake: FakeOllama, timeout: float, tmp) -> Proxy:
    """The proxy for `timeout`, not started yet (the fixture starts the two together)."""
    process = proxy_process(tmp, KEY, f"{timeout:g}", OLLAMA_HOSTS=fake.url, LITELLM_CONFIG=single_model_config(tmp),
                            LITELLM_TIMEOUT=f"{timeout:g}", LITELLM_NUM_RETRIES=str(RETRIES))
    return Proxy(process.url, timeout, process)


@pytest.fixture(scope="module")
def fake():
    with FakeOllama() as server:
        yield server


@pytest.fixture(scope="module")
def proxies(fake, tmp_path_factory):
    """Two real proxies in front of the one fake, started together: timeout 2 s and 10 s, 1 retry each."""
    tmp = tmp_path_factory.mktemp("faults")
    started = [start_proxy(fake, SHORT_TIMEOUT, tmp), start_proxy(fake, LONG_TIMEOUT, tmp)]
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda p: p.process.start(), started))
        yield {p.timeout: p for p in started}
    finally:
        for proxy in started:
            proxy.process.stop()


@pytest.fixture(scope="module")
def measured():
    rows: list[dict] = []
    yield rows
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2))


@pytest.fixture
def short(proxies, fake, measured):
    fake.reset()
    return Sender(proxies[SHORT_TIMEOUT], fake, measured)


@pytest.fixture
def long(proxies, fake, measured):
    fake.reset()
    return Sender(proxies[LONG_TIMEOUT], fake, measured)


class Sender:
    """Sends one chat completion with a nonce in the prompt, so the fake's count is this request's attempts."""

    def __init__(self, proxy: Proxy, fake: FakeOllama, measured: list[dict]):
        self.proxy, self.fake, self.measured = proxy, fake, measured

    def chat(self, fault: str, stream: bool, prompt: str = "Say hello") -> Outcome:
        nonce = uuid.uuid4().hex
        payload = {"model": MODEL, "messages": [{"role": "user", "content": f"{prompt} {nonce}"}],
                   "max_tokens": 8, "stream": stream}
        started = time.monotonic()
        # The client waits longer than the config allows, so a hang fails the bound below, not the test run.
        response = requests.post(f"{self.proxy.url}/v1/chat/completions", json=payload, stream=stream,
                                 headers={"Authorization": f"Bearer {KEY}"}, timeout=bound(self.proxy.timeout) + 30)
        body = response.content
        outcome = Outcome(fault, stream, response.status_code, self.fake.attempts(nonce),
                          round(time.monotonic() - started, 2), body)
        row = {k: v for k, v in asdict(outcome).items() if k != "body"}
        self.measured.append({**row, "timeout_s": self.proxy.timeout, "num_retries": RETRIES})
        assert outcome.seconds <= bound(self.proxy.timeout), f"{fault}: {outcome.seconds} s > bound"
        return outcome


# -- through the proxy ----------------------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_healthy_backend_answers_once(short, stream):
    outcome = short.chat("ok", stream)
    assert (outcome.status, outcome.attempts) == (200, 1)
    assert outcome.text() == "ok" and outcome.finish_reason() == "stop"


@pytest.mark.integration
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_backend_500_is_retried_then_a_json_500(short, stream):
    short.fake.set_fault("http500", path="/api/chat")
    outcome = short.chat("http500", stream)
    assert (outcome.status, outcome.attempts) == (500, RETRIES + 1)
    assert "injected internal server error" in outcome.error()["message"]


@pytest.mark.integration
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_connection_reset_is_retried_then_a_json_500(short, stream):
    short.fake.set_fault("reset", path="/api/chat")
    outcome = short.chat("reset", stream)
    assert (outcome.status, outcome.attempts) == (500, RETRIES + 1)
    assert "Connection reset" in outcome.error()["message"]


@pytest.mark.integration
@pytest.mark.parametrize("fault", ["malformed", "truncated"])
def test_unparsable_answer_is_retried_then_a_json_500(short, fault):
    short.fake.set_fault(fault, path="/api/chat")
    outcome = short.chat(fault, stream=False)
    assert (outcome.status, outcome.attempts) == (500, RETRIES + 1)
    assert "APIConnectionError" in outcome.error()["message"]


@pytest.mark.integration
@pytest.mark.parametrize("fault", ["truncated", "nodone"])
def test_cut_stream_ends_as_a_clean_short_answer_without_retry(short, fault):
    # LiteLLM 1.108.7 keeps the complete lines, drops the half object and closes with finish_reason
    # "stop" and [DONE]: the cut is invisible to the client. No retry once the stream has started.
    short.fake.set_fault(fault, path="/api/chat")
    outcome = short.chat(fault, stream=True)
    assert (outcome.status, outcome.attempts) == (200, 1)
    assert outcome.text() == "Hello" and outcome.finish_reason() == "stop"


@pytest.mark.integration
def test_stream_of_malformed_json_ends_empty_without_error(short):
    # Same as a cut stream: the unparsable line is dropped and the client gets an empty, "stopped" answer.
    short.fake.set_fault("malformed", path="/api/chat")
    outcome = short.chat("malformed", stream=True)
    assert (outcome.status, outcome.attempts) == (200, 1)
    assert outcome.text() == "" and outcome.finish_reason() == "stop"


@pytest.mark.integration
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_slow_past_the_timeout_is_retried_then_a_408_timeout(short, stream):
    short.fake.set_fault("slow", delay=SHORT_TIMEOUT + 1.5, path="/api/chat")
    outcome = short.chat("slow_past_timeout", stream)
    assert (outcome.status, outcome.attempts) == (408, RETRIES + 1)
    error = outcome.error()
    assert "Timeout" in error["message"] and f"Timeout passed={SHORT_TIMEOUT}" in error["message"]
    # Each attempt waited the configured timeout; no attempt was cut short.
    assert outcome.seconds >= SHORT_TIMEOUT * (RETRIES + 1)


@pytest.mark.integration
def test_slow_within_the_short_timeout_succeeds_once(short):
    short.fake.set_fault("slow", delay=SHORT_TIMEOUT / 2, path="/api/chat")
    outcome = short.chat("slow_within_timeout", stream=False)
    assert (outcome.status, outcome.attempts) == (200, 1) and outcome.text() == "ok"


@pytest.mark.integration
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_slow_5s_with_a_10s_timeout_succeeds_once(long, stream):
    long.fake.set_fault("slow", delay=5.0, path="/api/chat")
    outcome = long.chat("slow_5s", stream)
    assert (outcome.status, outcome.attempts) == (200, 1) and outcome.text() == "ok"
    assert outcome.seconds >= 5.0


@pytest.mark.integration
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_10mb_answer_passes_through_whole(short, stream):
    short.fake.set_fault("huge", path="/api/chat")
    outcome = short.chat("huge_answer", stream)
    assert (outcome.status, outcome.attempts) == (200, 1)
    assert outcome.text() == "x" * HUGE_BYTES


@pytest.mark.integration
def test_10mb_prompt_reaches_the_backend_whole(short):
    outcome = short.chat("huge_prompt", stream=False, prompt="y" * HUGE_BYTES)
    assert (outcome.status, outcome.attempts) == (200, 1)
    received = [s.body for s in short.fake.seen if s.path == "/api/chat"]
    assert received and len(received[-1]) > HUGE_BYTES


@pytest.mark.integration
def test_next_request_after_failures_is_served_at_once(short):
    # allowed_fails 1 / cooldown_time 30 in the config, but a lone deployment is never cooled down.
    short.fake.set_fault("http500", path="/api/chat")
    assert short.chat("http500", stream=False).status == 500
    short.fake.set_fault("ok")
    outcome = short.chat("ok_after_failures", stream=False)
    assert (outcome.status, outcome.attempts) == (200, 1)


# -- the dashboard's probe, straight at the fake --------------------------------------------------------------

PROBE_TIMEOUT = 0.5


def probe(fake: FakeOllama) -> probes.ProbeResult:
    return probes.probe_backend(requests.Session(), fake.url, PROBE_TIMEOUT)


@pytest.fixture
def bare_fake(fake):
    fake.reset()
    yield fake
    fake.reset()


def test_probe_of_a_healthy_fake_is_healthy(bare_fake):
    result = probe(bare_fake)
    assert result.status == "healthy" and result.data["version"] == "0.0.0-fake-faults"
    assert bare_fake.counts() == {"/api/version": 1, "/api/tags": 1, "/api/ps": 1}


# What the probe must say for each fault on every endpoint: (status, error kind, words in the detail).
REASONS = {
    "http500": ("unhealthy", "http", ["/api/version", "HTTP 500"]),
    "malformed": ("unhealthy", "http", ["/api/version", "without JSON", "malformed body"]),
    "reset": ("offline", "offline", ["reset the connection"]),
    "slow": ("unhealthy", "timeout", ["timeout", f"within {PROBE_TIMEOUT:g} s"]),
}


@pytest.mark.parametrize("mode", sorted(REASONS))
def test_probe_names_what_the_backend_did(bare_fake, mode):
    status, error, words = REASONS[mode]
    bare_fake.set_fault(mode, delay=PROBE_TIMEOUT + 1.0)
    result = probe(bare_fake)
    assert (result.status, result.error) == (status, error), result.detail
    assert all(w in result.detail for w in words), result.detail


def test_probe_fault_on_a_later_endpoint_names_that_endpoint(bare_fake):
    bare_fake.set_fault("http500", path="/api/tags")
    result = probe(bare_fake)
    assert result.status == "unhealthy" and result.detail == "/api/tags answered HTTP 500"


def test_probe_of_a_closed_port_says_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: connect is refused
        result = probes.probe_backend(requests.Session(), url, PROBE_TIMEOUT)
    assert result.status == "offline" and "connection refused" in result.detail


@pytest.mark.parametrize("mode", sorted(REASONS))
def test_dashboard_ollama_component_carries_the_reason(bare_fake, mode):
    status, error, words = REASONS[mode]
    bare_fake.set_fault(mode, delay=PROBE_TIMEOUT + 1.0)
    monitor = Monitor([Check(f"backend:{bare_fake.url}", lambda: probe(bare_fake), 1.0, "ollama")],
                      canary_enabled=False)
    ollama = monitor.run_once()["components"]["ollama"]
    assert (ollama["status"], ollama["error"]) == (status, error)
    assert all(w in ollama["detail"] for w in words), ollama["detail"]
