"""/api/tokenize (an extension of Ollama's API): its shape, its bad input and its vocabularies, against fakes."""
from __future__ import annotations

import json

import pytest
import requests

from llmops.backend import create_app
from llmops.backend.registry import ModelEntry, UnreadableModel
from llmops.backend.tokenizers import Tokenizers
from tests.support.fakes.backend import FAKE_TAG, FakeEngine, FakeVocab, ServerThread


@pytest.fixture
def server(tmp_path):
    log: dict[str, list[str]] = {}
    engine = FakeEngine(tmp_path / "fake.gguf")
    with ServerThread(create_app(engine, max_queue=4, tokenizers=Tokenizers(FakeVocab.loader(log)))) as srv:
        srv.engine, srv.vocab_log = engine, log
        yield srv


def tokenize(server, body, **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(server.url + "/api/tokenize", data=data, timeout=10, **kw)


def test_a_string_gets_its_tokens_and_a_list_gets_one_token_list_each(server):
    one = tokenize(server, {"model": FAKE_TAG, "content": "three word text"})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["model"] == FAKE_TAG and body["tokens"] == [5, 4, 4]
    assert isinstance(body["total_duration"], int) and isinstance(body["load_duration"], int)
    many = tokenize(server, {"model": FAKE_TAG, "content": ["a bb", "", "ccc"]}).json()
    assert many["tokens"] == [[1, 2], [], [3]]
    assert tokenize(server, {"model": FAKE_TAG, "content": []}).json()["tokens"] == []
    special = tokenize(server, {"model": FAKE_TAG, "content": ["a bb"], "add_special": True}).json()
    assert special["tokens"] == [[FakeVocab.BOS, 1, 2]]


def test_tokenizing_loads_one_vocabulary_and_never_the_model_nor_the_engine_thread(server):
    for _ in range(3):
        assert tokenize(server, {"model": FAKE_TAG, "content": "x"}).status_code == 200
    assert server.vocab_log["loaded"] == [FAKE_TAG]  # kept for the next request
    assert server.engine.prompts == []  # the engine's tokenizer (the generation path) was not used
    assert not server.engine.batches


@pytest.mark.parametrize("body,status,fragment", [
    ({"content": "x"}, 400, "model is required"),
    ({"model": 7, "content": "x"}, 400, "model must be a string"),
    ({"model": "nope:1b", "content": "x"}, 404, 'model "nope:1b" not found'),
    ({"model": FAKE_TAG}, 400, "content is required"),
    ({"model": FAKE_TAG, "content": 12}, 400, "content must be a string or a list of strings, not int"),
    ({"model": FAKE_TAG, "content": {"a": "b"}}, 400, "not dict"),
    ({"model": FAKE_TAG, "content": ["ok", 3]}, 400, "content[1] must be a string, not int"),
    ({"model": FAKE_TAG, "content": "x", "add_special": "yes"}, 400, "add_special must be true or false"),
    ("not json", 400, "invalid JSON"),
    ("[1, 2]", 400, "must be a JSON object"),
])
def test_bad_input_is_an_ollama_style_error_and_the_server_stays_up(server, body, status, fragment):
    answer = tokenize(server, body)
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error"} and fragment in answer.json()["error"]
    assert tokenize(server, {"model": FAKE_TAG, "content": "still up"}).json()["tokens"] == [5, 2]


def test_a_get_is_405_and_the_route_is_counted_in_the_metrics(server):
    assert requests.get(server.url + "/api/tokenize", timeout=10).status_code == 405
    tokenize(server, {"model": FAKE_TAG, "content": "x"})
    tokenize(server, {"model": FAKE_TAG})
    metrics = requests.get(server.url + "/metrics", timeout=10).text
    assert 'endpoint="/api/tokenize",status="200"' in metrics and 'endpoint="/api/tokenize",status="400"' in metrics


def test_the_server_frees_its_vocabularies_when_it_stops(tmp_path):
    log: dict[str, list[str]] = {}
    engine = FakeEngine(tmp_path / "fake.gguf")
    with ServerThread(create_app(engine, tokenizers=Tokenizers(FakeVocab.loader(log)))) as srv:
        assert tokenize(srv, {"model": FAKE_TAG, "content": "x"}).status_code == 200
        assert "closed" not in log
    assert log["closed"] == [FAKE_TAG]


# -- the vocabularies, without a server --------------------------------------------------------

def entry(tmp_path, tag: str) -> ModelEntry:
    path = tmp_path / f"{tag.replace(':', '-')}.gguf"
    if not path.exists():
        path.write_bytes(b"GGUF")
    return ModelEntry(tag, path, "user", None)  # type: ignore[arg-type] - the fake loader reads no info


def test_the_least_recently_used_vocabulary_is_closed_past_the_bound(tmp_path):
    log: dict[str, list[str]] = {}
    vocabs = Tokenizers(FakeVocab.loader(log), kept=2)
    a, b, c = (entry(tmp_path, t) for t in ("a:1", "b:1", "c:1"))
    vocabs.tokenize(a, ["x"], False)
    vocabs.tokenize(b, ["x"], False)
    vocabs.tokenize(a, ["x"], False)  # a is now the most recent
    tokens, seconds = vocabs.tokenize(c, ["x y"], False)
    assert tokens == [[1, 1]] and seconds >= 0
    assert log["closed"] == ["b:1"] and vocabs.loaded() == ["a:1", "c:1"]
    vocabs.close()
    assert sorted(log["closed"]) == ["a:1", "b:1", "c:1"] and vocabs.loaded() == []


def test_a_changed_file_loads_its_vocabulary_again(tmp_path):
    import os

    log: dict[str, list[str]] = {}
    vocabs = Tokenizers(FakeVocab.loader(log))
    a = entry(tmp_path, "a:1")
    vocabs.tokenize(a, ["x"], False)
    stat = a.path.stat()
    os.utime(a.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    vocabs.tokenize(a, ["x"], False)
    assert log["loaded"] == ["a:1", "a:1"]


def test_a_file_llama_cpp_cannot_read_is_an_unreadable_model(tmp_path):
    def refuse(entry):
        raise ValueError("Failed to load model from file")

    with pytest.raises(UnreadableModel, match="'a:1' cannot be loaded: Failed to load model"):
        Tokenizers(refuse).tokenize(entry(tmp_path, "a:1"), ["x"], False)
    gone = entry(tmp_path, "b:1")
    gone.path.unlink()
    with pytest.raises(UnreadableModel, match="'b:1' cannot be loaded"):
        Tokenizers(refuse).tokenize(gone, ["x"], False)
