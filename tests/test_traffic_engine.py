"""The generator against a fake OpenAI-compatible server: counting, timing, classification, outputs."""
import asyncio
import json
from pathlib import Path

import pytest

from llmops.traffic import EXIT_ERRORS, EXIT_OK, PreflightError, TrafficConfig, run
from llmops.traffic import prompts as bank
from llmops.traffic.arrivals import Burst
from llmops.traffic.client import RequestResult, _read_stream
from tests.support import helpers
from tests.support.fakes.traffic import KEY, MODEL, FakeOpenAI

BANK = Path(__file__).resolve().parent.parent / "data" / "prompts"


def config(fake, **kw):
    kw.setdefault("max_requests", 5)
    kw.setdefault("seed", 1)
    return TrafficConfig(url=fake.url, api_key=KEY, **kw)


def lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# (what the fake does, the request's detail, its outcome class)
FAILURE_PLAN = [
    ({}, "ok", "ok"),
    ({"status": 429}, "http_429", "rate_limited"),
    ({"status": 500}, "http_500", "server_error"),
    ({"status": 503}, "http_503", "server_error"),
    ({"status": 400}, "http_400", "client_error"),
    ({"status": 408}, "http_408", "timeout"),  # LiteLLM's answer when the backend call timed out
    ({"truncate_after": 2, "token_delay": 0.005}, "truncated_stream", "server_error"),
    ({"hang": True}, "timeout", "timeout"),
    ({"reset": True}, "connection_error", "server_error"),
    ({"bad_json": True, "token_delay": 0.001}, "bad_response", "server_error"),
    ({"stream_error": True}, "stream_error", "server_error"),
]


def test_every_request_is_counted_exactly_once_and_classified(tmp_path):
    by_prompt = {}

    def plan(n, body):
        # The behaviour follows the prompt, so the expected class of each output line is known.
        key = body["messages"][-1]["content"]
        by_prompt.setdefault(key, len(by_prompt) % len(FAILURE_PLAN))
        return FAILURE_PLAN[by_prompt[key]][0]

    with FakeOpenAI(plan) as fake:
        out, summ = tmp_path / "out.jsonl", tmp_path / "summary.json"
        result = run(config(fake, max_requests=60, concurrency=8, timeout=0.5, output=out, summary_json=summ))
        received = len(fake.requests)
    records = lines(out)
    summary = json.loads(summ.read_text())
    assert received == 60
    assert len(records) == 60 and sorted(r["id"] for r in records) == list(range(1, 61))
    assert summary["requests"]["total"] == 60
    assert sum(summary["failures"].values()) + summary["requests"]["ok"] == 60
    for r in records:
        _, detail, outcome = FAILURE_PLAN[by_prompt[_content_of(r["prompt_id"])]]
        assert (r["detail"], r["status"]) == (detail, outcome), r
    counted, details = {}, {}
    for r in records:
        counted[r["status"]] = counted.get(r["status"], 0) + 1
        details[r["detail"]] = details.get(r["detail"], 0) + 1
    assert set(counted) == {"ok", "client_error", "rate_limited", "server_error", "timeout"}
    assert summary["failures"] == {k: v for k, v in counted.items() if k != "ok"}
    assert summary["outcomes"] == {**dict.fromkeys(("ok", "client_error", "rate_limited", "server_error", "timeout",
                                                   "invalid_output"), 0), **counted}
    assert summary["details"] == {k: v for k, v in sorted(details.items()) if k != "ok"}
    assert summary["requests"]["timed_out"] == counted["timeout"]
    assert summary["requests"]["rate_limited"] == counted["rate_limited"]
    # 429s are not backend failures: they stay out of the error ratio.
    failed = sum(v for k, v in counted.items() if k not in ("ok", "rate_limited"))
    assert summary["error_ratio"] == pytest.approx(failed / 60)
    assert result.exit_code == EXIT_ERRORS and summary["exit_code"] == EXIT_ERRORS


def _content_of(prompt_id, _bank={}):  # noqa: B006 - a cache of the shipped bank
    if not _bank:
        _bank.update((p.id, p.messages[-1]["content"]) for p in bank.load())
    return _bank[prompt_id]


class FakeClock:
    """FAKE perf_counter: reads what the stream below sets."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class SteppedStream:
    """FAKE streamed response: each read of the body arrives at its own time on the clock."""

    def __init__(self, clock: FakeClock, reads: list[tuple[float, bytes]]):
        self.clock, self.reads, self.content = clock, reads, self

    async def iter_any(self):
        for at, data in self.reads:
            self.clock.now = at
            yield data


def _event(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _delta(**delta) -> dict:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


def test_ttft_inter_token_gaps_and_tpot_are_computed_from_the_chunks_arrival_times():
    """On a fake clock, so the figures are exact: the role-only first chunk is not the first token, an event is
    stamped when its last bytes arrive, two events in one read share that read's time."""
    clock = FakeClock()
    third = _event(_delta(content="c"))
    reads = [
        (10.05, _event(_delta(role="assistant", content=""))),
        (10.20, _event(_delta(content="a"))),
        (10.23, _event(_delta(content="b")) + third[:9]),
        (10.27, third[9:]),
        (10.30, _event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}) + b"data: [DONE]\n\n"),
    ]
    result = RequestResult(id=1)
    asyncio.run(_read_stream(SteppedStream(clock, reads), 10.0, result, clock))
    assert result.detail == "ok" and (result.prompt_tokens, result.completion_tokens) == (7, 3)
    assert result.ttft_s == pytest.approx(0.20)
    assert result.itl_s == pytest.approx([0.03, 0.04])
    assert result.latency_s == pytest.approx(0.30)
    assert result.tpot_s == pytest.approx((0.30 - 0.20) / 2)


def test_timings_through_a_server_are_at_least_its_injected_delays():
    """Wall time through the fake server: each figure is at least the delay the server put in (a lower bound;
    the exact arithmetic is the fake-clock test above)."""
    with FakeOpenAI([{"ttft": 0.2, "tokens": 6, "token_delay": 0.02}]) as fake:
        result = run(config(fake, max_requests=5))
    s = result.summary
    assert s["requests"]["ok"] == 5
    assert s["ttft_s"]["p50"] >= 0.200 and s["ttft_s"]["p50"] < s["latency_s"]["p50"]
    assert s["itl_s"]["p50"] >= 0.020 and s["tpot_s"]["p50"] >= 0.020
    assert s["latency_s"]["p50"] >= 0.200 + 5 * 0.020
    assert s["tokens"]["completion"] == 30 and s["tokens"]["source"] == "usage"


def test_tokens_fall_back_to_counting_chunks_without_usage():
    with FakeOpenAI([{"tokens": 3, "usage": False}]) as fake:
        s = run(config(fake, max_requests=2)).summary
    assert s["tokens"] == {"prompt": 0, "completion": 6, "source": "chunks"}


def test_non_streamed_requests_have_latency_but_no_ttft():
    with FakeOpenAI([{"ttft": 0.05, "tokens": 7}]) as fake:
        s = run(config(fake, max_requests=3, stream=False)).summary
        body = fake.requests[0][1]
    assert body["stream"] is False and "stream_options" not in body
    assert s["requests"]["ok"] == 3 and s["ttft_s"]["count"] == 0
    assert s["latency_s"]["p50"] >= 0.05 and s["tokens"]["completion"] == 21


def test_request_carries_key_user_agent_model_and_options():
    with FakeOpenAI(models=["first-model", MODEL]) as fake:
        run(config(fake, max_requests=2, max_tokens=9, temperature=0.3, priority=2))
        headers, body = fake.requests[0]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["User-Agent"] == "llmops-traffic/0.1"
    assert body["model"] == "first-model"  # the first one /v1/models lists
    assert body["max_tokens"] == 9 and body["temperature"] == 0.3 and body["priority"] == 2
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_priority_zero_is_sent_and_defaults_are_not():
    with FakeOpenAI() as fake:
        run(config(fake, max_requests=1, priority=0, categories=("classification",)))
        run(config(fake, max_requests=1, categories=("classification",)))
        zero, body = fake.requests[0][1], fake.requests[1][1]
    assert zero["priority"] == 0  # the proxy's queue serves 0 first; LiteLLM read it as none
    assert "priority" not in body and "temperature" not in body
    assert body["max_tokens"] == 8  # the prompt's own budget
    assert body["messages"][0]["role"] == "system"


def test_seed_makes_prompt_order_and_poisson_schedule_reproducible(tmp_path):
    runs = []
    with FakeOpenAI() as fake:
        for n in range(2):
            out = tmp_path / f"run{n}.jsonl"
            run(config(fake, max_requests=20, rate=400.0, arrivals="poisson", seed=11, output=out))
            runs.append(sorted(lines(out), key=lambda r: r["scheduled_s"]))
    first, second = ([(r["prompt_id"], r["scheduled_s"]) for r in recs] for recs in runs)
    assert [p for p, _ in first] == [p for p, _ in second]
    offsets = lambda recs: [s - recs[0][1] for _, s in recs]  # noqa: E731
    assert offsets(first) == pytest.approx(offsets(second), abs=3e-6)  # written to microseconds


def test_open_loop_rate_spaces_requests_evenly(tmp_path):
    out = tmp_path / "out.jsonl"
    with FakeOpenAI() as fake:
        s = run(config(fake, max_requests=50, rate=500.0, output=out)).summary
    scheduled = sorted(r["scheduled_s"] for r in lines(out))
    assert s["requests"]["total"] == 50
    assert all(abs((b - a) - 0.002) < 1e-6 for a, b in zip(scheduled, scheduled[1:], strict=False))


def test_burst_sends_size_requests_together(tmp_path):
    out = tmp_path / "out.jsonl"
    with FakeOpenAI() as fake:
        run(config(fake, max_requests=6, burst=Burst(3, 0.1), output=out))
    scheduled = sorted(r["scheduled_s"] for r in lines(out))
    assert len(set(scheduled[:3])) == 1 and len(set(scheduled[3:])) == 1
    assert scheduled[3] - scheduled[0] == pytest.approx(0.1)


def test_duration_stops_sending_and_counts_what_was_in_flight(tmp_path):
    out = tmp_path / "out.jsonl"
    with FakeOpenAI([{"ttft": 0.05}]) as fake:
        s = run(config(fake, max_requests=None, duration=0.5, concurrency=4, output=out)).summary
        received = len(fake.requests)
    assert 4 <= s["requests"]["total"] == received == len(lines(out))
    assert s["requests"]["ok"] == s["requests"]["total"]


def test_warmup_requests_are_written_but_not_counted(tmp_path):
    out = tmp_path / "out.jsonl"
    with FakeOpenAI() as fake:
        s = run(config(fake, max_requests=4, warmup=3, output=out)).summary
        received = len(fake.requests)
    phases = [r["phase"] for r in lines(out)]
    assert received == 7 and phases.count("warmup") == 3 and phases.count("measure") == 4
    assert s["requests"]["total"] == 4 and s["warmup"] == {"requests": 3, "ok": 3}


def test_sweep_runs_each_level_and_finds_where_throughput_stops(tmp_path):
    out = tmp_path / "out.jsonl"
    with FakeOpenAI([{"ttft": 0.02}]) as fake:
        s = run(config(fake, max_requests=6, sweep=(1, 2, 4), output=out)).summary
    assert [lvl["concurrency"] for lvl in s["sweep"]] == [1, 2, 4]
    assert all(lvl["requests"]["total"] == 6 for lvl in s["sweep"])
    assert s["requests"]["total"] == 18
    assert sorted({r["concurrency"] for r in lines(out)}) == [1, 2, 4]
    assert "concurrency" in s["knee"]["message"]


def test_error_ratio_decides_the_exit_code():
    with FakeOpenAI([{}] * 9 + [{"status": 500}]) as fake:
        assert run(config(fake, max_requests=10, max_error_ratio=0.2)).exit_code == EXIT_OK
    with FakeOpenAI([{}] * 9 + [{"status": 500}]) as fake:
        assert run(config(fake, max_requests=10, max_error_ratio=0.05)).exit_code == EXIT_ERRORS
    with FakeOpenAI([{}, {"status": 429}]) as fake:
        result = run(config(fake, max_requests=10, max_error_ratio=0.0))
    assert result.exit_code == EXIT_OK and result.summary["requests"]["rate_limited"] == 5
    with FakeOpenAI([{"status": 429}]) as fake:
        result = run(config(fake, max_requests=3))
    assert result.exit_code == EXIT_ERRORS and "no request succeeded" in result.verdict


def test_output_and_summary_files_are_valid_json(tmp_path):
    out, summ = tmp_path / "deep" / "out.jsonl", tmp_path / "deep" / "summary.json"
    with FakeOpenAI([{"tokens": 3, "token_delay": 0.001}]) as fake:
        run(config(fake, max_requests=5, output=out, summary_json=summ, slo_ttft=1.0))
    records = lines(out)
    summary = json.loads(summ.read_text())
    assert {"id", "status", "latency_s", "ttft_s", "itl_mean_s", "completion_tokens", "slo_ok"} <= set(records[0])
    assert all(r["slo_ok"] is True for r in records)
    assert summary["goodput"]["ratio"] == 1.0 and summary["config"]["api_key"] == "[redacted]"
    assert KEY not in summ.read_text() and KEY not in out.read_text()


@pytest.mark.parametrize("setup, words", [
    (dict(key=KEY, api_key="sk-wrong"), "rejected the API key"),
    (dict(key=KEY, api_key=""), "without a key"),
    (dict(key=KEY, model="nope"), "'nope' is unknown"),
    (dict(key=KEY, models=[]), "lists no models"),
])
def test_preflight_names_the_problem(setup, words):
    with FakeOpenAI(models=setup.get("models"), key=setup["key"]) as fake:
        cfg = TrafficConfig(url=fake.url, api_key=setup.get("api_key", KEY), model=setup.get("model"), max_requests=1)
        with pytest.raises(PreflightError, match=words):
            run(cfg)
        assert fake.requests == []  # nothing sent before the check passes


def test_preflight_names_an_unreachable_proxy(free_port):
    with pytest.raises(PreflightError, match="unreachable"):
        run(TrafficConfig(url=f"http://127.0.0.1:{free_port}", api_key=KEY, max_requests=1))


@pytest.fixture
def free_port():
    return helpers.free_port()


def test_ttft_is_measured_per_request_under_concurrency():
    with FakeOpenAI([{"ttft": 0.1, "tokens": 2}]) as fake:
        s = run(config(fake, max_requests=16, concurrency=8)).summary
    assert s["requests"]["ok"] == 16
    assert s["ttft_s"]["count"] == 16 and s["ttft_s"]["p50"] >= 0.1


def test_delay_spaces_a_workers_requests(tmp_path):
    out = tmp_path / "out.jsonl"
    with FakeOpenAI() as fake:
        run(config(fake, max_requests=3, delay=0.1, output=out))
    starts = sorted(r["start_s"] for r in lines(out))
    # asyncio may wake a timer up to its clock resolution early: allow 5 ms.
    assert all(b - a >= 0.095 for a, b in zip(starts, starts[1:], strict=False))


def test_concurrency_ramp_starts_workers_one_by_one(tmp_path):
    out = tmp_path / "out.jsonl"
    with FakeOpenAI([{"ttft": 0.3}]) as fake:
        run(config(fake, max_requests=4, concurrency=4, ramp=0.3, output=out))
    starts = sorted(r["start_s"] for r in lines(out))
    # Workers start at 0, 0.1, 0.2, 0.3 s; without the ramp all four would start at once.
    assert starts[-1] - starts[0] >= 0.25


def test_url_and_key_come_from_the_stack_settings(monkeypatch, tmp_path):
    from llmops.traffic.runner import resolve

    env = tmp_path / ".env"
    env.write_text("LITELLM_PORT=8123\nLITELLM_MASTER_KEY=sk-from-env-file\n")
    monkeypatch.setenv("LLMOPS_ENV_FILE", str(env))
    for name in ("LITELLM_PORT", "LITELLM_MASTER_KEY", "BIND_HOST"):
        monkeypatch.delenv(name, raising=False)
    got = resolve(TrafficConfig())
    assert (got.url, got.api_key) == ("http://127.0.0.1:8123", "sk-from-env-file")
    kept = resolve(TrafficConfig(url="http://10.0.0.5:9000/", api_key="sk-flag"))
    assert (kept.url, kept.api_key) == ("http://10.0.0.5:9000", "sk-flag")
