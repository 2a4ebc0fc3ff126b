"""Several models behind one backend (fake engines, real GGUF headers), driven by the official clients:
tags/show/ps, load on demand, keep_alive, LRU, embeddings, structured-output input checks, pull/copy/delete/create."""
from __future__ import annotations

import base64
import logging
import re
import struct
from datetime import UTC, datetime, timedelta

import ollama
import openai
import pytest
import requests

from llmops.backend import create_app
from llmops.backend.loader import LoadedModels
from llmops.backend.registry import ModelSource, Registry
from tests.support.fakes.backend import FakeEngine, ServerThread, wait_for, write_gguf

CHAT_A, CHAT_B, EMBED = "chat-a:1m", "chat-b:2m", "embed:1m"


def serve(tmp_path, max_loaded: int = 3, keep_alive: float = 300.0, num_parallel: int = 1) -> ServerThread:
    pkg = tmp_path / "pkg"
    pkg.mkdir(exist_ok=True)
    models_dir = tmp_path / "models"
    models_dir.mkdir(exist_ok=True)
    files = {
        CHAT_A: write_gguf(pkg / "a.gguf", "llama", template="{{ messages }}", params=1_000_000),
        CHAT_B: write_gguf(pkg / "b.gguf", "gemma3", file_type=15, params=2_000_000),
        EMBED: write_gguf(pkg / "e.gguf", "bert", pooling=True, file_type=1, ctx=512, params=22_566_528),
    }
    engines: list[FakeEngine] = []

    def factory(entry):
        engine = FakeEngine(entry.path, entry.tag, n_ctx=min(512, entry.info.context_length or 512), info=entry.info,
                            n_slots=1 if entry.info.is_embedding else num_parallel)
        engines.append(engine)
        return engine

    registry = Registry([ModelSource(tag, (lambda p=path: p)) for tag, path in files.items()], models_dir)
    models = LoadedModels(factory, max_loaded=max_loaded, keep_alive=keep_alive, num_ctx=512, num_parallel=num_parallel)
    srv = ServerThread(create_app(registry=registry, models=models))
    srv.engines, srv.files, srv.models_dir, srv.loaded = engines, files, models_dir, models
    return srv


@pytest.fixture
def server(tmp_path):
    with serve(tmp_path) as srv:
        yield srv


@pytest.fixture
def client(server):
    return ollama.Client(host=server.url, timeout=10)


def loaded(client) -> list[str]:
    return [m.model for m in client.ps().models]


def say(client, model: str, **kw):
    kw.setdefault("options", {"num_predict": 3})
    return client.chat(model=model, messages=[{"role": "user", "content": "hi"}], **kw)


# -- tags, show -------------------------------------------------------------------------------
def test_tags_list_every_model_with_details_from_its_gguf_header(client, server):
    models = {m.model: m for m in client.list().models}
    assert set(models) == {CHAT_A, CHAT_B, EMBED}
    assert models[CHAT_B].details.family == "gemma3" and models[CHAT_B].details.quantization_level == "Q4_K_M"
    assert models[CHAT_B].details.parameter_size == "2M"
    assert models[EMBED].details.parameter_size == "22.57M" and models[EMBED].details.quantization_level == "F16"
    assert models[CHAT_A].size == server.files[CHAT_A].stat().st_size
    assert len(models[CHAT_A].digest) == 64


def test_show_gives_capabilities_context_and_embedding_length(client):
    shown = client.show(EMBED)
    assert shown.capabilities == ["embedding"]
    assert shown.modelinfo["bert.context_length"] == 512 and shown.modelinfo["bert.embedding_length"] == 8
    assert client.show(CHAT_A).capabilities == ["completion"]
    assert client.show(CHAT_A).template == "{{ messages }}"


def test_a_dropped_in_gguf_appears_in_tags_and_a_corrupt_one_is_a_clear_400(client, server):
    write_gguf(server.models_dir / "My-Model.Q4_1.gguf", "qwen2")
    (server.models_dir / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00 truncated")
    names = [m.model for m in client.list().models]
    assert "my-model.q4_1:latest" in names and "broken:latest" not in names
    assert say(client, "my-model.q4_1").message.content
    with pytest.raises(ollama.ResponseError) as info:
        say(client, "broken")
    assert info.value.status_code == 400 and "not a valid GGUF" in info.value.error
    assert client.list().models  # still up


# -- load on demand, keep_alive, LRU ---------------------------------------------------------
def test_nothing_is_loaded_until_asked_and_a_request_loads_it(client):
    assert loaded(client) == []
    answer = say(client, CHAT_A)
    assert answer.load_duration > 0
    (entry,) = client.ps().models
    assert entry.model == CHAT_A and entry.size_vram == 0 and entry.size > 0 and entry.context_length == 512
    expected = datetime.now(UTC) + timedelta(minutes=5)
    assert abs((entry.expires_at - expected).total_seconds()) < 5


def test_keep_alive_zero_unloads_after_the_request(client, server):
    assert say(client, CHAT_A, keep_alive=0).message.content
    assert loaded(client) == []
    assert server.engines[-1].closed


def test_keep_alive_duration_runs_out_and_negative_keeps_it_forever(client):
    say(client, CHAT_A, keep_alive="1s")
    say(client, CHAT_B, keep_alive=-1)
    wait_for(lambda: loaded(client) == [CHAT_B], timeout=5, what="chat-a to expire after 1 s")
    (entry,) = client.ps().models
    assert entry.expires_at.year > datetime.now(UTC).year + 100


def test_empty_requests_load_and_unload_as_in_ollama(client):
    loaded_reply = client.chat(model=CHAT_A, messages=[])
    assert loaded_reply.done_reason == "load" and loaded(client) == [CHAT_A]
    unloaded = client.generate(model=CHAT_A, keep_alive=0)
    assert unloaded.done_reason == "unload" and loaded(client) == []


def test_lru_eviction_with_one_slot(tmp_path):
    with serve(tmp_path, max_loaded=1) as srv:
        client = ollama.Client(host=srv.url, timeout=10)
        say(client, CHAT_A)
        say(client, CHAT_B)
        assert loaded(client) == [CHAT_B]
        assert srv.engines[0].closed and not srv.engines[1].closed


def test_lru_evicts_the_least_recently_used_of_two(tmp_path):
    with serve(tmp_path, max_loaded=2) as srv:
        client = ollama.Client(host=srv.url, timeout=10)
        say(client, CHAT_A)
        say(client, CHAT_B)
        say(client, CHAT_A)  # B is now the least recently used
        client.embed(model=EMBED, input="x")
        assert sorted(loaded(client)) == sorted([CHAT_A, EMBED])


def test_bad_keep_alive_is_a_400(client):
    with pytest.raises(ollama.ResponseError) as info:
        say(client, CHAT_A, keep_alive="soon")
    assert info.value.status_code == 400 and "invalid duration" in info.value.error


# -- embeddings -------------------------------------------------------------------------------
def test_embed_a_list_is_one_batch_of_unit_vectors(client, server):
    reply = client.embed(model=EMBED, input=["a cat", "a dog", "the sea"])
    assert len(reply.embeddings) == 3
    assert all(abs(sum(v * v for v in vec) - 1) < 1e-6 for vec in reply.embeddings)
    assert reply.prompt_eval_count == 6 and reply.load_duration > 0 and reply.total_duration > 0
    (engine,) = [e for e in server.engines if e.info.tag == EMBED]
    assert engine.embed_calls == [["a cat", "a dog", "the sea"]]


def test_embed_truncate_false_past_the_context_is_a_400_and_true_truncates(client):
    long_text = "word " * 600
    with pytest.raises(ollama.ResponseError) as info:
        client.embed(model=EMBED, input=long_text, truncate=False)
    assert info.value.status_code == 400 and "exceeds maximum context length" in info.value.error
    assert client.embed(model=EMBED, input=long_text).prompt_eval_count == 512


def test_legacy_embeddings_and_an_empty_embed_load_the_model(client):
    assert len(client.embeddings(model=EMBED, prompt="hello").embedding) == 8
    assert client.embed(model=CHAT_B, input=[]).embeddings == [] and CHAT_B in loaded(client)


def test_a_chat_model_embeds_and_an_embedding_model_refuses_to_chat(client):
    assert len(client.embed(model=CHAT_A, input="hello").embeddings[0]) == 8  # Ollama embeds with any model
    with pytest.raises(ollama.ResponseError) as info:
        say(client, EMBED)
    assert info.value.status_code == 400 and "does not support chat" in info.value.error
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model=EMBED, prompt="hi")
    assert "does not support generate" in info.value.error


def test_openai_embeddings_float_and_base64(server):
    api = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    floats = api.embeddings.create(model=EMBED, input=["one", "two"])
    assert [d.index for d in floats.data] == [0, 1] and len(floats.data[0].embedding) == 8
    assert floats.usage.prompt_tokens == 2
    raw = requests.post(server.url + "/v1/embeddings", json={"model": EMBED, "input": "one", "encoding_format": "base64"},
                        timeout=5).json()["data"][0]["embedding"]
    decoded = struct.unpack("<8f", base64.b64decode(raw))
    assert decoded == pytest.approx(floats.data[0].embedding, abs=1e-6)


@pytest.mark.parametrize("body, message", [
    ({"model": EMBED, "input": 5}, "invalid input type"),
    ({"model": EMBED, "input": ["ok", 3]}, "invalid input type"),
    ({"model": EMBED, "input": "x", "truncate": "yes"}, "truncate must be true or false"),
    ({"input": "x"}, "model is required"),
])
def test_embed_bad_input_is_a_400(server, body, message):
    response = requests.post(server.url + "/api/embed", json=body, timeout=5)
    assert response.status_code == 400 and message in response.json()["error"]


def test_openai_embeddings_bad_input_is_an_openai_error(server):
    response = requests.post(server.url + "/v1/embeddings", json={"model": EMBED, "input": "x", "encoding_format": "hex"}, timeout=5)
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


def test_embedding_and_chat_share_the_metrics_labelled_by_kind(client, server):
    say(client, CHAT_A)
    client.embed(model=EMBED, input=["a", "b"])
    text = requests.get(server.url + "/metrics", timeout=5).text
    assert 'llm_backend_jobs_total{kind="chat"} 1.0' in text
    assert 'llm_backend_jobs_total{kind="embed"} 1.0' in text
    assert "llm_backend_loaded_models 2.0" in text


# -- structured outputs: what reaches the engine, and bad schemas ------------------------------
def test_format_json_and_a_schema_become_a_grammar(client, server):
    say(client, CHAT_A, format="json")
    assert "object" in server.engines[-1].last_opts.grammar
    say(client, CHAT_A, format={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    assert '"\\"n\\""' in server.engines[-1].last_opts.grammar or "n-kv" in server.engines[-1].last_opts.grammar


@pytest.mark.parametrize("fmt, message", [
    ({"type": "objekt"}, "invalid JSON schema"),
    ({"type": "object", "properties": {"n": {"type": "integer", "minimum": "zero"}}}, "invalid JSON schema"),
    ({"type": "object", "properties": {"n": {"$ref": "#/$defs/missing"}}}, "unsupported JSON schema in format"),
    # The converter takes these; llama.cpp's parser refuses the first and would crash on the second.
    ({"type": "object", "properties": {"n": {"type": "string", "pattern": "^\\d+$"}}}, "format: llama.cpp cannot compile"),
    ({"type": "object", "properties": {"n": {"type": "string", "maxLength": 50_000}}}, "format: maxLength: 50000"),
])
def test_an_invalid_format_is_a_400_and_the_server_stays_up(client, fmt, message):
    with pytest.raises(ollama.ResponseError) as info:
        say(client, CHAT_A, format=fmt)
    assert info.value.status_code == 400 and message in info.value.error
    assert say(client, CHAT_A).done


def test_a_format_that_is_neither_json_nor_a_schema_is_a_400(server):
    body = {"model": CHAT_A, "prompt": "hi", "format": "yaml", "stream": False}
    response = requests.post(server.url + "/api/generate", json=body, timeout=5)
    assert response.status_code == 400 and "invalid format" in response.json()["error"]


def test_openai_response_format_checks(server):
    api = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    ok = api.chat.completions.create(model=CHAT_A, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                     response_format={"type": "json_object"})
    assert ok.choices[0].message.content is not None
    with pytest.raises(openai.BadRequestError) as info:
        api.chat.completions.create(model=CHAT_A, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                    response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 7}}})
    assert "invalid JSON schema" in str(info.value)


# -- options ----------------------------------------------------------------------------------
def test_an_unknown_option_is_ignored_with_one_log_line(client, caplog):
    with caplog.at_level(logging.WARNING, logger="llmops.backend.options"):
        say(client, CHAT_A, options={"num_predict": 2, "frobnicate_unit_test": 1})
        say(client, CHAT_A, options={"num_predict": 2, "frobnicate_unit_test": 1})
    assert sum("frobnicate_unit_test" in r.getMessage() for r in caplog.records) == 1


# -- management -------------------------------------------------------------------------------
def test_pull_of_a_present_model_streams_ollamas_statuses(client):
    statuses = [p.status for p in client.pull(CHAT_A, stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert client.pull(CHAT_A).status == "success"


def test_pull_of_an_absent_model_says_how_to_add_one(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.pull("llama3:70b")
    assert "reaches no registry" in info.value.error and "BACKEND_MODELS_DIR" in info.value.error
    with pytest.raises(ollama.ResponseError) as info:
        list(client.pull("llama3:70b", stream=True))
    assert "/api/create" in info.value.error


def test_copy_then_delete_round_trip(client, server):
    client.copy(CHAT_A, "mine:v1")
    assert "mine:v1" in [m.model for m in client.list().models]
    assert say(client, "mine:v1").done
    client.delete("mine:v1")
    assert "mine:v1" not in [m.model for m in client.list().models]
    assert server.files[CHAT_A].exists()


def test_deleting_a_package_model_keeps_its_file_and_pull_brings_it_back(client, server):
    say(client, CHAT_B)
    client.delete(CHAT_B)
    assert CHAT_B not in [m.model for m in client.list().models] and CHAT_B not in loaded(client)
    assert server.files[CHAT_B].exists()
    assert client.pull(CHAT_B).status == "success"
    assert CHAT_B in [m.model for m in client.list().models]


def test_deleting_a_dropped_in_model_removes_the_users_file(client, server):
    dropped = write_gguf(server.models_dir / "extra.gguf", "llama")
    client.delete("extra")
    assert not dropped.exists()
    with pytest.raises(ollama.ResponseError) as info:
        client.delete("extra")
    assert info.value.status_code == 404


def test_create_from_a_local_gguf_path_and_its_bad_inputs(client, server, tmp_path):
    outside = write_gguf(tmp_path / "outside.gguf", "phi3")
    assert client.create(model="phi:tiny", from_=str(outside)).status == "success"
    assert client.show("phi:tiny").details.family == "phi3"
    client.delete("phi:tiny")
    assert outside.exists()  # a linked file is the user's, never deleted
    (tmp_path / "junk.gguf").write_bytes(b"not a model at all")
    for source, message in ((str(tmp_path / "junk.gguf"), "not a GGUF"), (str(tmp_path / "none.gguf"), "not a file")):
        with pytest.raises(ollama.ResponseError) as info:
            client.create(model="bad:1", from_=source)
        assert info.value.status_code == 400 and message in info.value.error
    assert client.list().models


def test_a_schema_grammar_keeps_control_characters_out_of_strings():
    from llmops.backend.structured import ollama_format

    grammar = ollama_format({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]})
    (char_rule,) = [line for line in grammar.splitlines() if line.startswith("char ::=")]
    assert "\\x00-\\x1F" in char_rule  # a raw tab or newline inside a JSON string does not parse


def test_every_chat_model_exports_its_slot_count_loaded_or_not(tmp_path):
    with serve(tmp_path, num_parallel=3) as server:
        client = ollama.Client(host=server.url, timeout=10)

        def slots() -> dict[str, float]:
            text = requests.get(server.url + "/metrics", timeout=5).text
            return {m.group(1): float(m.group(2))
                    for m in re.finditer(r'^llm_backend_slots\{model="([^"]+)"\} (\S+)$', text, re.M)}

        assert slots() == {CHAT_A: 3, CHAT_B: 3}  # nothing loaded yet; the embedding model has no slots
        assert say(client, CHAT_A, keep_alive=0).message.content
        assert loaded(client) == []
        assert slots() == {CHAT_A: 3, CHAT_B: 3}  # still there after the unload: the proxy's queue reads it
