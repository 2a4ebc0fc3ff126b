"""How the generator counts a prompt file's tokens: the served model's tokenizer, else the stated estimate (with fakes)."""
from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import pytest
import requests

from llmops.backend import create_app
from llmops.backend.tokenizers import Tokenizers
from llmops.errors import ConfigError
from llmops.traffic import cli, datasets, tokencount
from llmops.traffic.tokencount import Estimate, ModelTokenizer, TokenCountError
from tests.support.fakes.backend import FakeEngine, FakeVocab, ServerThread
from tests.support.fakes.ollama import FakeOllama
from tests.support.fakes.traffic import KEY, MODEL, FakeOpenAI, FakeTokenizePost

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "datasets"
SHAREGPT = FIXTURES / "sharegpt.json"


def words(text: str) -> int:
    return len(text.split())


def sharegpt(tmp_path, n: int, reply=lambda i: "word " * (1 + i % 7)) -> Path:
    records = [{"conversations": [{"from": "human", "value": f"question {i} with some words"},
                                  {"from": "gpt", "value": reply(i)}]} for i in range(n)]
    path = tmp_path / "many.json"
    path.write_text(json.dumps(records))
    return path


# -- the model's tokenizer over HTTP ----------------------------------------------------------

def test_texts_are_counted_in_batches_with_the_models_own_name():
    post = FakeTokenizePost("ok")
    counter = ModelTokenizer("http://backend:1", "smollm2:135m", post=post)
    texts = [f"w{i} " * (i % 5) for i in range(600)]
    assert counter.count(texts) == [words(t) for t in texts]
    assert [len(c["content"]) for c in post.calls] == [256, 256, 88]
    assert {c["url"] for c in post.calls} == {"http://backend:1/api/tokenize"}
    assert {c["model"] for c in post.calls} == {"smollm2:135m"} and all("add_special" not in c for c in post.calls)
    assert counter.public() == {"counter": "model", "label": "smollm2:135m's tokenizer (embedded backend)",
                                "model": "smollm2:135m", "url": "http://backend:1", "why": None, "texts": 600,
                                "calls": 3}


@pytest.mark.parametrize("step,fragment", [
    (("status", 404, "404 page not found"), "has no /api/tokenize (404: a real Ollama has no tokenizer route)"),
    (("status", 404, {"error": 'model "x:1b" not found, try pulling it first'}), "does not serve m:1: model \"x:1b\""),
    (("status", 500, {"error": "internal error: boom"}), "answered /api/tokenize with 500: internal error: boom"),
    (("status", 400, {"error": "content[0] must be a string"}), "with 400: content[0] must be a string"),
    ("not json", "answered /api/tokenize with no token list per text (2 sent)"),
    ("short", "no token list per text (2 sent)"),
    ("strings", "no token list per text"),
    (requests.ConnectionError("refused"), "the backend at http://b:1 is unreachable (ConnectionError)"),
    (requests.ReadTimeout("slow"), "did not answer /api/tokenize within 30 s"),
])
def test_a_bad_or_missing_answer_is_a_token_count_error_that_says_why(step, fragment):
    with pytest.raises(TokenCountError) as info:
        ModelTokenizer("http://b:1", "m:1", post=FakeTokenizePost(step)).count(["a b", "c"])
    assert fragment in str(info.value)


# -- drawing a dataset with a counter ---------------------------------------------------------

def test_the_reply_lengths_come_from_the_models_tokenizer_and_only_the_drawn_records_are_counted(tmp_path):
    path = sharegpt(tmp_path, 1000)
    post = FakeTokenizePost("ok+1")  # a token more than the words: not what the estimate would give
    parsed = datasets.read(path)
    counter = ModelTokenizer("http://b:1", "smollm2:135m", post=post)
    ds = parsed.draw(30, 5, False, counter)
    replies = {r.id: r.reply for r in parsed.records}
    assert [p.max_tokens for p in ds.prompts] == [words(replies[p.id]) + 1 for p in ds.prompts]
    assert sum(len(c["content"]) for c in post.calls) == 30 and len(post.calls) == 1
    assert ds.tokens == "smollm2:135m's tokenizer (embedded backend)" and ds.token_count["texts"] == 30
    assert "tokens: smollm2:135m's tokenizer (embedded backend)" in ds.line()


def test_pruning_counts_prompt_and_reply_with_the_counter_and_draws_until_the_sample_is_full(tmp_path):
    # Replies of 1-3 words are under vLLM's 4 tokens: pruned; the sample keeps drawing, a batch at a time.
    path = sharegpt(tmp_path, 400, reply=lambda i: "word " * (1 + i % 8))
    post = FakeTokenizePost("ok")
    ds = datasets.read(path).draw(100, 1, True, ModelTokenizer("http://b:1", "m", post=post))
    assert len(ds.prompts) == 100 and all(p.max_tokens >= 4 for p in ds.prompts)
    assert ds.pruned > 0
    sent = [len(c["content"]) for c in post.calls]
    assert sum(sent) == 2 * (100 + ds.pruned)  # a prompt and a reply for each record looked at, no more
    assert all(n <= 2 * datasets.BATCH for n in sent)


def test_auto_falls_back_to_the_estimate_for_every_record_when_the_tokenizer_fails_partway(tmp_path, monkeypatch):
    path = sharegpt(tmp_path, 600)
    post = FakeTokenizePost("ok", requests.ConnectionError("gone"))
    monkeypatch.setattr(tokencount, "counter_for", lambda mode, model, url: ModelTokenizer("http://b:1", model, post=post))
    parsed = datasets.read(path)
    ds = tokencount.draw(parsed, None, 0, False, True, "auto", "m", None)
    replies = {r.id: r.reply for r in parsed.records}
    assert len(post.calls) == 2  # the first batch was counted, the second failed
    assert [p.max_tokens for p in ds.prompts] == [math.ceil(len(replies[p.id]) / 4) for p in ds.prompts]
    assert ds.token_count["counter"] == "estimate"
    assert ds.tokens == ("estimate: 1 token per 4 characters, rounded up (the backend at http://b:1 is unreachable "
                         "(ConnectionError))")
    with pytest.raises(TokenCountError, match="unreachable"):
        post.calls.clear()
        tokencount.draw(parsed, None, 0, False, True, "model", "m", None)


def test_nothing_is_counted_where_no_length_is_needed(tmp_path, monkeypatch):
    monkeypatch.setattr(tokencount, "counter_for", lambda *a: pytest.fail("no counter is needed"))
    fixed = tokencount.draw(datasets.read(SHAREGPT), None, 0, False, False, "model", "m", None)  # --max-tokens
    assert fixed.tokens == "not counted (--max-tokens sets every answer's length)"
    assert fixed.token_count == {"counter": None, "why": "--max-tokens sets every answer's length", "texts": 0}
    jsonl = tokencount.draw(datasets.read(FIXTURES / "prompts.jsonl"), None, 0, True, True, "auto", "m", None)
    assert jsonl.tokens == "not counted (no record's length is measured)" and "tokens:" not in jsonl.line()
    asked = tokencount.draw(datasets.read(SHAREGPT), None, 0, False, True, "estimate", "m", None)
    assert asked.tokens == "estimate: 1 token per 4 characters, rounded up (--token-count estimate)"


# -- which backend and which name -------------------------------------------------------------

def _stack(tmp_path, monkeypatch, config: str) -> None:
    (tmp_path / "litellm.yaml").write_text(config)
    env = tmp_path / "env"
    env.write_text(f"OLLAMA_PORT=23456\nLITELLM_CONFIG={tmp_path / 'litellm.yaml'}\n")
    for name in ("OLLAMA_PORT", "OLLAMA_HOSTS", "LITELLM_CONFIG", "BIND_HOST", "BACKENDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLMOPS_ENV_FILE", str(env))


CONFIG = """model_list:
  - model_name: chat
    litellm_params: {model: ollama_chat/smollm2:135m, api_base: os.environ/OLLAMA_API_BASE}
  - model_name: pinned
    litellm_params: {model: ollama/gemma3:270m, api_base: "http://127.0.0.1:24000/"}
  - model_name: cloud
    litellm_params: {model: openai/gpt-4o-mini, api_base: "https://api.example.com/v1"}
"""


def test_the_proxys_name_is_mapped_to_the_backends_and_its_url_found(tmp_path, monkeypatch):
    _stack(tmp_path, monkeypatch, CONFIG)
    assert tokencount.backend_for("chat") == ("http://127.0.0.1:23456", "smollm2:135m")
    assert tokencount.backend_for("pinned") == ("http://127.0.0.1:24000", "gemma3:270m")
    assert tokencount.backend_for("chat", "http://elsewhere:1/") == ("http://elsewhere:1", "smollm2:135m")
    assert tokencount.backend_for("unlisted") == ("http://127.0.0.1:23456", "unlisted")
    with pytest.raises(TokenCountError, match="routes cloud to openai/, not to an Ollama API"):
        tokencount.backend_for("cloud")
    counter = tokencount.counter_for("auto", "cloud")
    assert isinstance(counter, Estimate) and "routes cloud to openai/" in counter.label


# -- the command line, end to end with fakes --------------------------------------------------

@pytest.fixture
def tokenizing_backend(tmp_path):
    """The embedded backend's real /api/tokenize serving the fake proxy's model, over a fake vocabulary."""
    engine = FakeEngine(tmp_path / "fake.gguf", tag=MODEL)
    with ServerThread(create_app(engine, tokenizers=Tokenizers(FakeVocab.loader({})))) as srv:
        yield srv


def run_cli(tmp_path, *flags) -> tuple[int, dict, list]:
    summary = tmp_path / "s.json"
    with FakeOpenAI([{"tokens": 2}]) as fake:
        code = cli.main(["--url", fake.url, "--api-key", KEY, "--max", "3", "--prompts", str(SHAREGPT), "--seed", "4",
                         "--no-progress", "--summary-json", str(summary), "--results-dir", str(tmp_path / "runs"),
                         *flags])
    doc = json.loads(summary.read_text()) if summary.exists() else {}
    return code, doc, fake.requests


def test_a_sharegpt_run_sets_max_tokens_from_the_served_models_tokenizer(tmp_path, capsys, tokenizing_backend):
    code, doc, sent = run_cli(tmp_path, "--backend-url", tokenizing_backend.url)
    assert code == 0
    replies = {r.id: r.reply for r in datasets.read(SHAREGPT).records}
    by_prompt = {r.messages[-1]["content"]: words(r.reply) for r in datasets.read(SHAREGPT).records}
    assert sorted(body["max_tokens"] for _, body in sent) == sorted(by_prompt[b["messages"][-1]["content"]]
                                                                    for _, b in sent)
    assert any(words(r) != math.ceil(len(r) / 4) for r in replies.values())  # the estimate would differ
    counted = doc["dataset"]["token_count"]
    assert counted["counter"] == "model" and counted["model"] == MODEL and counted["url"] == tokenizing_backend.url
    assert doc["dataset"]["tokens"] == f"{MODEL}'s tokenizer (embedded backend)"
    assert f"tokens: {MODEL}'s tokenizer (embedded backend)" in capsys.readouterr().err


def test_a_real_ollama_or_a_backend_that_is_down_falls_back_to_the_estimate_and_says_why(tmp_path, capsys):
    with FakeOllama() as ollama:  # a real Ollama's API: /api/tokenize is a 404
        code, doc, sent = run_cli(tmp_path, "--backend-url", ollama.url)
    assert code == 0
    estimates = {r.messages[-1]["content"]: math.ceil(len(r.reply) / 4) for r in datasets.read(SHAREGPT).records}
    assert all(body["max_tokens"] == estimates[body["messages"][-1]["content"]] for _, body in sent)
    err = capsys.readouterr().err
    assert doc["dataset"]["token_count"]["counter"] == "estimate"
    assert "has no /api/tokenize (404: a real Ollama has no tokenizer route)" in doc["dataset"]["tokens"]
    assert "tokens: estimate: 1 token per 4 characters, rounded up (the backend at" in err
    assert "Traceback" not in err
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    code, doc, _ = run_cli(tmp_path, "--backend-url", closed)
    assert code == 0 and f"the backend at {closed} is unreachable" in doc["dataset"]["tokens"]


def test_token_count_model_stops_the_run_in_one_line_when_it_cannot_count(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    code, doc, sent = run_cli(tmp_path, "--backend-url", closed, "--token-count", "model")
    err = capsys.readouterr().err.strip()
    assert code == 3 and doc == {} and sent == [] and not (tmp_path / "runs").exists()
    assert err == f"traffic_generator: error: --token-count model: the backend at {closed} is unreachable (ConnectionError)"


@pytest.mark.parametrize("flags,fragment", [
    (("--token-count", "exact"), "argument --token-count: invalid choice: 'exact'"),
    (("--backend-url", "localhost:11434"), "--backend-url: 'localhost:11434' is not a URL"),
])
def test_bad_token_count_flags_are_usage_errors(tmp_path, capsys, flags, fragment):
    try:
        code = run_cli(tmp_path, *flags)[0]
    except SystemExit as exc:  # argparse's own refusal
        code = exc.code
    assert code == 2
    assert fragment in capsys.readouterr().err


def test_the_config_refuses_an_unknown_token_count():
    from llmops.traffic import TrafficConfig

    with pytest.raises(ConfigError, match="--token-count: must be one of auto, model, estimate, not 'exact'"):
        TrafficConfig(token_count="exact").validate()
