"""The traffic generator through the real proxy and the embedded backend (real inference)."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from llmops.traffic import TrafficConfig, run
from tests.support.requestlog import logged

pytestmark = pytest.mark.integration


def test_generator_through_the_real_proxy_counts_every_request(ensure_stack_ready, tmp_path):
    stack = ensure_stack_ready
    output, summary_file = tmp_path / "requests.jsonl", tmp_path / "summary.json"
    result = run(TrafficConfig(url=stack.settings.litellm_url, api_key=stack.key, max_requests=6, concurrency=2,
                               max_tokens=16, seed=7, output=output, summary_json=summary_file))
    assert result.exit_code == 0, result.verdict
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(lines) == 6 and sorted(line["id"] for line in lines) == list(range(1, 7))
    assert all(line["status"] == "ok" for line in lines), lines
    assert all(line["completion_tokens"] > 0 and line["ttft_s"] is not None for line in lines)
    summary = json.loads(summary_file.read_text())
    assert stack.key not in summary_file.read_text() and stack.key not in output.read_text()
    assert summary["requests"]["ok"] == 6


FIXTURES = __import__("pathlib").Path(__file__).resolve().parent / "fixtures" / "datasets"


def test_a_jsonl_prompt_file_runs_through_the_real_stack(ensure_stack_ready, tmp_path):
    stack = ensure_stack_ready
    output = tmp_path / "requests.jsonl"
    result = run(TrafficConfig(url=stack.settings.litellm_url, api_key=stack.key, max_requests=4, max_tokens=8,
                               seed=3, prompts=FIXTURES / "prompts.jsonl", output=output))
    assert result.exit_code == 0, result.verdict
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(line["prompt_id"] for line in lines) == ["prompts.jsonl:1", "prompts.jsonl:2", "prompts.jsonl:3",
                                                          "prompts.jsonl:5"]
    assert {line["category"] for line in lines} == {"prompts"} and all(line["status"] == "ok" for line in lines)
    assert result.summary["dataset"]["formats"] == {"jsonl": 1}


def test_capacity_with_a_lax_slo_reaches_the_top_level_and_an_impossible_one_answers_zero(ensure_stack_ready):
    stack = ensure_stack_ready
    common = dict(url=stack.settings.litellm_url, api_key=stack.key, capacity=True, max_requests=3, max_tokens=8,
                  seed=5)
    lax = run(TrafficConfig(**common, sweep=(1, 2), slo="ttft_p95<=60s,itl_p95<=10s,errors<=50%"))
    cap = lax.summary["capacity"]
    assert lax.exit_code == 0 and cap["max_concurrency"] == 2 and cap["broke_at"] is None, cap["message"]
    assert cap["order"] == [1, 2] and [lv["requests"] for lv in cap["levels"]] == [3, 3]
    strict = run(TrafficConfig(**common, slo="ttft_p95<=1ms,errors<=50%"))
    cap = strict.summary["capacity"]
    assert (cap["max_concurrency"], cap["broke_at"], cap["order"]) == (0, 1, [1]), cap["message"]
    assert cap["broken_bound"]["metric"] == "ttft_p95" and "at 1, TTFT p95 is" in cap["message"]


def test_a_sharegpt_records_max_tokens_is_its_replys_token_count_by_the_served_models_tokenizer(ensure_stack_ready,
                                                                                                tmp_path):
    from llmops.backend.engine import LlamaEngine
    from llmops.backend.model import default_model_path

    stack = ensure_stack_ready
    replies = ["1, 2, 3, 4, 5, 6, 7", "Once upon a time, a dragon (named Ümit) slept.", "2+2=4; 3*3=9; 10/2=5"]
    records = [{"conversations": [{"from": "human", "value": f"Tell me a very long story about {topic}."},
                                  {"from": "gpt", "value": reply}]}
               for topic, reply in zip(("a lighthouse", "a dragon", "a robot"), replies, strict=True)]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(records))
    engine = LlamaEngine(default_model_path(), "smollm2:135m", n_ctx=256)  # the model the stack serves
    try:
        expected = {f"sharegpt.json:{i}": len(engine.tokenize(reply)) for i, reply in enumerate(replies)}
    finally:
        engine.close()
    assert all(n != -(-len(r) // 4) for n, r in zip(expected.values(), replies, strict=True))  # the estimate would differ
    output = tmp_path / "requests.jsonl"
    result = run(TrafficConfig(url=stack.settings.litellm_url, api_key=stack.key, model="smollm2:135m", max_requests=3,
                               temperature=0, seed=2, prompts=path, output=output, token_count="model",
                               backend_url=stack.settings.ollama_url))
    assert result.exit_code == 0, result.verdict
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(line["prompt_id"] for line in lines) == sorted(expected)
    # Each answer ran to its max_tokens: what the model generated is the reply's count, not the estimate.
    assert [(line["finish_reason"], line["completion_tokens"]) for line in lines] == \
        [("length", expected[line["prompt_id"]]) for line in lines], lines
    dataset = result.summary["dataset"]
    assert dataset["tokens"] == "smollm2:135m's tokenizer (embedded backend)"
    assert dataset["token_count"]["counter"] == "model" and dataset["token_count"]["texts"] == 3
    assert "tokens: smollm2:135m's tokenizer (embedded backend)" in result.dataset_line


def test_a_priority_mix_run_reports_both_classes_with_the_counts_the_proxys_queue_saw(ensure_stack_ready, tmp_path):
    """The proxy's request log, written by the queue's plug-in, is the count of what was sent at each priority."""
    stack = ensure_stack_ready
    output, summary_file = tmp_path / "requests.jsonl", tmp_path / "summary.json"
    result = run(TrafficConfig(url=stack.settings.litellm_url, api_key=stack.key, max_requests=12, concurrency=3,
                               max_tokens=4, seed=5, priority_mix="0:40,9:60", output=output,
                               summary_json=summary_file))
    assert result.exit_code == 0, result.verdict
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    rows = logged(stack.settings.request_log_path, [line["call_id"] for line in lines])
    seen = Counter(row["priority"] for row in rows.values())  # as the proxy's queue read each request's body
    assert set(seen) == {0, 9} and sum(seen.values()) == 12, seen
    assert all(rows[line["call_id"]]["priority"] == line["priority"] for line in lines)
    part = json.loads(summary_file.read_text())["priorities"]
    assert list(part) == ["0", "9"]
    for key, entry in part.items():
        assert entry["requests"]["total"] == entry["requests"]["ok"] == seen[int(key)], (key, entry)
        assert entry["ttft_s"]["p50"] is not None and entry["latency_s"]["p95"] is not None
