"""The generator's model mix, embeddings load and --response-format checks, against the FAKE OpenAI server."""
import json
from collections import Counter
from pathlib import Path

import pytest

from llmops.errors import ConfigError
from llmops.traffic import TrafficConfig, run
from llmops.traffic.cli import main
from llmops.traffic.mix import ModelMix, ModelPicker
from llmops.traffic.outputcheck import OutputCheck
from tests.support.fakes.traffic import KEY, FakeOpenAI

CHAT_A, CHAT_B, EMBED = "smollm2:135m", "gemma3:270m", "all-minilm:22m"
MODELS = [CHAT_A, CHAT_B, EMBED]
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
          "additionalProperties": False}


def config(fake, **kw):
    kw.setdefault("max_requests", 20)
    kw.setdefault("seed", 3)
    return TrafficConfig(url=fake.url, api_key=KEY, **kw)


def lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# -- the mix ------------------------------------------------------------------------------------------------

def test_mix_parses_ollama_tags_and_weights():
    mix = ModelMix.parse("smollm2:135m,gemma3:270m:3")
    assert mix.models == (CHAT_A, CHAT_B) and mix.weights == (1.0, 3.0)
    assert mix.share(CHAT_B) == 0.75
    assert ModelMix.parse("fake-model").single
    assert str(mix) == "smollm2:135m,gemma3:270m:3"


@pytest.mark.parametrize("text, words", [
    ("a,,b", "empty model name"), ("a:0", "weight must be > 0"), ("a,a", "named twice"), (" :2", "not a model"),
])
def test_bad_mix_is_rejected_with_the_reason(text, words):
    with pytest.raises(ValueError, match=words):
        ModelMix.parse(text)


def test_picker_follows_the_weights_and_the_seed():
    mix = ModelMix.parse("a:1,b:3")
    drawn = [ModelPicker(mix, seed=5).next() for _ in range(1)]
    first = ModelPicker(mix, seed=5)
    again = ModelPicker(mix, seed=5)
    seq = [first.next() for _ in range(4000)]
    assert seq == [again.next() for _ in range(4000)] and drawn[0] == seq[0]
    assert Counter(seq)["b"] / len(seq) == pytest.approx(0.75, abs=0.03)


def test_a_model_mix_sends_each_model_and_counts_every_request_once_per_model(tmp_path):
    # gemma3:270m fails every time: its failures must be its own, not smollm2's.
    plan = lambda n, body: {"status": 500} if body["model"] == CHAT_B else {}  # noqa: E731
    with FakeOpenAI(plan, models=MODELS) as fake:
        out, summ = tmp_path / "out.jsonl", tmp_path / "summary.json"
        result = run(config(fake, model=f"{CHAT_A},{CHAT_B}:2", max_requests=60, concurrency=4,
                            output=out, summary_json=summ, max_error_ratio=1.0))
        sent = Counter(body["model"] for _, body in fake.requests)
    records = lines(out)
    summary = json.loads(summ.read_text())
    assert len(records) == 60 and sum(sent.values()) == 60 and set(sent) == {CHAT_A, CHAT_B}
    by_model = Counter(r["model"] for r in records)
    assert by_model == sent  # the JSONL names the model each request went to
    models = summary["models"]
    assert list(models) == [CHAT_A, CHAT_B]
    assert models[CHAT_A]["requests"]["total"] == sent[CHAT_A] == models[CHAT_A]["requests"]["ok"]
    assert models[CHAT_B]["requests"]["total"] == sent[CHAT_B] == models[CHAT_B]["failures"]["server_error"]
    assert models[CHAT_B]["requests"]["ok"] == 0 and models[CHAT_A]["failures"] == {}
    assert sum(m["requests"]["total"] for m in models.values()) == summary["requests"]["total"] == 60
    assert models[CHAT_A]["latency_s"]["p50"] is not None and models[CHAT_B]["latency_s"]["p50"] is None
    assert result.summary["model"] == f"{CHAT_A},{CHAT_B}:2"


def test_a_mix_naming_a_model_the_proxy_lacks_is_refused_before_sending(capsys):
    with FakeOpenAI(models=[CHAT_A]) as fake:
        code = main(["--url", fake.url, "--api-key", KEY, "--model", f"{CHAT_A},{CHAT_B}", "--max", "1"])
        assert fake.requests == []
    assert code == 3 and CHAT_B in capsys.readouterr().err


# -- embeddings ---------------------------------------------------------------------------------------------

def test_embeddings_load_sends_batches_and_counts_embeddings_per_second(tmp_path):
    plan = lambda n, body: {"short": True} if n % 5 == 4 else {}  # noqa: E731 - every 5th answer lacks a vector
    with FakeOpenAI(plan, models=MODELS) as fake:
        out, summ = tmp_path / "out.jsonl", tmp_path / "summary.json"
        run(config(fake, model=EMBED, endpoint="embeddings", batch=4, max_requests=20, concurrency=2,
                   output=out, summary_json=summ, max_error_ratio=1.0))
        bodies = list(fake.embeddings)
    assert fake.requests == []  # nothing went to chat completions
    assert len(bodies) == 20 and all(len(b["input"]) == 4 and b["model"] == EMBED for b in bodies)
    assert all(isinstance(t, str) and t for b in bodies for t in b["input"])
    records = lines(out)
    summary = json.loads(summ.read_text())
    assert Counter((r["status"], r["detail"]) for r in records) == {("ok", "ok"): 16, ("server_error", "bad_response"): 4}
    assert all(r["kind"] == "embeddings" and r["inputs"] == 4 for r in records)
    assert summary["requests"]["total"] == 20 and summary["failures"] == {"server_error": 4}
    assert summary["details"] == {"bad_response": 4}
    assert summary["endpoint"] == "embeddings"
    per_s = summary["throughput"]["embeddings_per_s"]
    assert per_s == pytest.approx(16 * 4 / summary["duration_s"])
    assert summary["models"][EMBED]["throughput"]["embeddings_per_s"] is not None


def test_a_single_input_is_sent_as_a_string():
    with FakeOpenAI(models=MODELS) as fake:
        run(config(fake, model=EMBED, endpoint="embeddings", max_requests=3))
        assert all(isinstance(b["input"], str) for b in fake.embeddings) and len(fake.embeddings) == 3


# -- --response-format --------------------------------------------------------------------------------------

def test_json_mode_asks_for_json_and_counts_an_answer_that_does_not_parse_as_invalid_output_once(tmp_path):
    answers = ['{"answer": "yes"}', "Sure! ```json {\"answer\": 1}```", '["not", "an", "object"]', '{"answer": "no"}']
    plan = lambda n, body: {"content": answers[n % len(answers)]}  # noqa: E731
    with FakeOpenAI(plan, models=MODELS) as fake:
        out, summ = tmp_path / "out.jsonl", tmp_path / "summary.json"
        for stream in (True, False):
            run(config(fake, model=CHAT_A, response_format="json", max_requests=8, stream=stream,
                       output=out, summary_json=summ, max_error_ratio=1.0))
            summary = json.loads(summ.read_text())
            records = lines(out)
            assert Counter(r["status"] for r in records) == {"ok": 4, "invalid_output": 4}, stream
            assert summary["requests"]["total"] == 8 and summary["failures"] == {"invalid_output": 4}
            assert summary["requests"]["ok"] + sum(summary["failures"].values()) == 8  # each request once
            assert all("not JSON" in r["error"] or "not an object" in r["error"]
                       for r in records if r["status"] == "invalid_output")
        assert all(body["response_format"] == {"type": "json_object"} for _, body in fake.requests)


def test_a_schema_is_sent_and_every_answer_validated(tmp_path):
    schema_file = tmp_path / "answer.json"
    schema_file.write_text(json.dumps(SCHEMA))
    answers = ['{"answer": "yes"}', '{"answer": 3}', '{"answer": "x", "extra": 1}', '{}']
    plan = lambda n, body: {"content": answers[n % len(answers)]}  # noqa: E731
    with FakeOpenAI(plan, models=MODELS) as fake:
        out = tmp_path / "out.jsonl"
        result = run(config(fake, model=CHAT_A, response_format=str(schema_file), max_requests=8, output=out,
                            max_error_ratio=1.0, stream=False))
        sent = fake.requests[0][1]["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}
    assert result.summary["failures"] == {"invalid_output": 6} and result.summary["requests"]["ok"] == 2
    errors = [r["error"] for r in lines(out) if r["status"] == "invalid_output"]
    assert any("at answer" in e for e in errors) and any("'answer' is a required property" in e for e in errors)


def test_output_check_names_the_problem():
    check = OutputCheck("answer", SCHEMA)
    assert check.problem('{"answer": "ok"}') is None
    assert "not JSON" in check.problem("{nope")
    assert "at answer" in check.problem('{"answer": []}')


@pytest.mark.parametrize("content, words", [
    (None, "neither \"json\" nor a JSON schema file"), ("{not json", "not JSON"), ("[1]", "is an object"),
    ('{"type": "no-such-type"}', "not a valid JSON schema"),
])
def test_bad_response_format_is_a_usage_error_naming_the_file(tmp_path, content, words):
    path = tmp_path / "schema.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=words):
        TrafficConfig(url="http://127.0.0.1:1", response_format=str(path)).validate()


@pytest.mark.parametrize("argv, words", [
    (["--endpoint", "embeddings"], "needs --model"),
    (["--batch", "4"], "--batch: is for --endpoint embeddings"),
    (["--endpoint", "embeddings", "--model", EMBED, "--batch", "0"], "--batch: must be within"),
    (["--endpoint", "embeddings", "--model", EMBED, "--response-format", "json"], "cannot be combined"),
    (["--model", "a,,b"], "--model: 'a,,b' has an empty model name"),
    (["--endpoint", "images"], "invalid choice"),
])
def test_bad_model_flags_give_one_line_and_exit_2(capsys, argv, words):
    with pytest.raises(SystemExit) if "invalid choice" in words else _nothing():
        code = main(["--url", "http://127.0.0.1:1", *argv])
        assert code == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


class _nothing:  # noqa: N801 - a no-op context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_cli_prints_a_row_per_model(capsys):
    with FakeOpenAI(models=MODELS) as fake:
        code = main(["--url", fake.url, "--api-key", KEY, "--model", f"{CHAT_A},{CHAT_B}", "--max", "6",
                     "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "Per model" in out and CHAT_A in out and CHAT_B in out


# -- --tools ------------------------------------------------------------------------------------------------

TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}]


def test_tools_are_offered_and_a_call_that_does_not_parse_or_validate_is_invalid_output_once(tmp_path):
    tools_file = tmp_path / "tools.json"
    tools_file.write_text(json.dumps(TOOLS))
    plans = [{"tool_calls": [("add", '{"a": 1, "b": 2}')]}, {"tool_calls": [("add", '{"a": 1,')]},
             {"tool_calls": [("sub", '{"a": 1, "b": 2}')]}, {"tool_calls": [("add", '{"a": "one", "b": 2}')]},
             {"content": "No tool fits."}]
    with FakeOpenAI(plans, models=MODELS) as fake:
        out = tmp_path / "out.jsonl"
        for stream in (True, False):
            result = run(config(fake, model=CHAT_A, tools=str(tools_file), max_requests=10, stream=stream, output=out,
                                max_error_ratio=1.0, concurrency=1))
            records = lines(out)
            assert Counter(r["status"] for r in records) == {"ok": 4, "invalid_output": 6}, stream
            assert result.summary["requests"]["total"] == 10  # each request once
            errors = sorted({r["error"] for r in records if r["status"] == "invalid_output"})
            assert [e.split(":")[0] for e in errors] == ["tool call 0 (add)", "tool call 0 (add)",
                                                          "tool call 0 names 'sub', which is not among the tools"]
            assert any("not JSON" in e for e in errors) and any("at a" in e for e in errors)
            assert sorted(r["tool_calls"] for r in records) == [0, 0] + [1] * 8
            if stream:
                assert all(r["ttft_s"] is not None for r in records)  # a call's first delta is its first token
        assert all(body["tools"] == TOOLS for _, body in fake.requests)


@pytest.mark.parametrize("content, extra, words", [
    (None, {}, "cannot be read"), ("{not json", {}, "not JSON"), ("[]", {}, "non-empty JSON list"),
    ('[{"function": {}}]', {}, "needs function.name"),
    ('[{"function": {"name": "f", "parameters": {"type": "bogus"}}}]', {}, "not a valid JSON schema"),
    (json.dumps(TOOLS), {"response_format": "json"}, "cannot be combined with --response-format"),
])
def test_bad_tools_file_is_a_usage_error_naming_the_file(tmp_path, content, extra, words):
    path = tmp_path / "tools.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=words):
        TrafficConfig(url="http://127.0.0.1:1", tools=str(path), **extra).validate()


def test_a_missing_tools_file_on_the_command_line_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["--url", "http://127.0.0.1:1", "--tools", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tools" in err[0] and "none.json" in err[0]
