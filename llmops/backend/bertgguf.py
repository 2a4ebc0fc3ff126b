"""Write a BERT sentence-embedding model (Hugging Face folder) as a GGUF file, without torch.

This follows llama.cpp's own converter (`convert_hf_to_gguf.py`: `BertModel` in `conversion/bert.py`
and `TextModel` in `conversion/base.py` of llama.cpp as vendored by llama-cpp-python 0.3.36) for the
parts a plain `BertModel` checkpoint uses, with the `gguf` package as the writer: the same metadata
keys, tensor names (from gguf's TensorNameMap), tensor types for `--outtype f16`, and vocabulary.
"""
from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from safetensors import SafetensorError, safe_open

from ..errors import ConfigError

# What convert_hf_to_gguf.py's get_vocab_base_pre() names the uncased BERT WordPiece pre-tokenizer
# (its hash matches BAAI/bge-small-en-v1.5's; tests/test_embedmodel.py checks that for this tokenizer).
TOKENIZER_PRE = "bert-bge"

# Tensors BertModel.filter_tensors drops: position ids, and the pooler and heads that embeddings never use.
_SKIPPED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")
_SKIPPED_PREFIXES = ("cls.predictions", "cls.seq_relationship")
# Kept in F32 whatever the output type, as convert_hf_to_gguf.py does for these keys.
_F32_KEYS = (gguf.MODEL_TENSOR.POS_EMBD, gguf.MODEL_TENSOR.TOKEN_TYPES)


class ConversionError(ConfigError):
    """The model folder cannot be converted; the message names the file and what is wrong in it."""


def _load_json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConversionError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{path}: not valid JSON ({exc})") from exc


def _hf_name(name: str) -> str:
    """BertModel.filter_tensors' renames: no `bert.` prefix, TF-style gamma/beta as weight/bias."""
    name = name.removeprefix("bert.")
    if name.endswith(".gamma"):
        name = name[:-6] + ".weight"
    if name.endswith(".beta"):
        name = name[:-5] + ".bias"
    return name


def expected_shapes(hparams: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor a BertModel checkpoint must hold (after _hf_name), with its shape from config.json."""
    n_embd, n_ff = hparams["hidden_size"], hparams["intermediate_size"]
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (hparams["vocab_size"], n_embd),
        "embeddings.position_embeddings.weight": (hparams["max_position_embeddings"], n_embd),
        "embeddings.token_type_embeddings.weight": (hparams.get("type_vocab_size", 2), n_embd),
        "embeddings.LayerNorm.weight": (n_embd,),
        "embeddings.LayerNorm.bias": (n_embd,),
    }
    for bid in range(hparams["num_hidden_layers"]):
        layer = f"encoder.layer.{bid}."
        for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes[layer + part + ".weight"] = (n_embd, n_embd)
            shapes[layer + part + ".bias"] = (n_embd,)
        shapes[layer + "intermediate.dense.weight"] = (n_ff, n_embd)
        shapes[layer + "intermediate.dense.bias"] = (n_ff,)
        shapes[layer + "output.dense.weight"] = (n_embd, n_ff)
        shapes[layer + "output.dense.bias"] = (n_embd,)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[layer + norm + ".weight"] = (n_embd,)
            shapes[layer + norm + ".bias"] = (n_embd,)
    return shapes


def _hparams(model_dir: Path) -> dict:
    hparams = _load_json(model_dir / "config.json")
    arch = (hparams.get("architectures") or [""])[0] if isinstance(hparams, dict) else None
    if arch != "BertModel":
        raise ConversionError(f"{model_dir / 'config.json'}: architecture {arch!r}, expected 'BertModel'")
    needed = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "max_position_embeddings", "vocab_size", "layer_norm_eps")
    missing = [key for key in needed if not isinstance(hparams.get(key), (int, float))]
    if missing:
        raise ConversionError(f"{model_dir / 'config.json'}: missing {', '.join(missing)}")
    return hparams


def _pooling_type(model_dir: Path) -> gguf.PoolingType | None:
    """TextModel._try_set_pooling_type: the sentence-transformers Pooling module's mode."""
    modules_path = model_dir / "modules.json"
    if not modules_path.is_file():
        return None
    pooling_path = next((m["path"] for m in _load_json(modules_path) if m.get("type", "").endswith("Pooling")), None)
    if pooling_path is None:
        return None
    config_path = model_dir / pooling_path / "config.json"
    pooling = _load_json(config_path)
    if pooling.get("pooling_mode_mean_tokens"):
        return gguf.PoolingType.MEAN
    if pooling.get("pooling_mode_cls_token"):
        return gguf.PoolingType.CLS
    if pooling.get("pooling_mode_lasttoken"):
        return gguf.PoolingType.LAST
    raise ConversionError(f"{config_path}: only mean, cls and last-token pooling are supported")


def _vocab(model_dir: Path, vocab_size: int) -> tuple[list[str], list[int]]:
    """TextModel.get_vocab_base + BertModel.set_vocab, read from tokenizer.json without transformers."""
    path = model_dir / "tokenizer.json"
    tokenizer = _load_json(path)
    model = tokenizer.get("model") if isinstance(tokenizer, dict) else None
    if not isinstance(model, dict) or model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict) \
            or not model["vocab"]:
        raise ConversionError(f"{path}: not a WordPiece tokenizer with a vocabulary")
    reverse = {token_id: token for token, token_id in model["vocab"].items()}
    added = {entry["id"]: entry for entry in tokenizer.get("added_tokens", [])}
    if max(reverse) >= vocab_size:
        raise ConversionError(f"{path}: token id {max(reverse)} is outside the model's vocab_size {vocab_size}")
    tokens, types = [], []
    for token_id in range(vocab_size):
        token = reverse.get(token_id)
        if token is None:
            tokens.append(f"[PAD{token_id}]")
            types.append(gguf.TokenType.UNUSED)
        elif token_id in added and added[token_id].get("special"):
            tokens.append(token)  # control tokens stay as they are
            types.append(gguf.TokenType.CONTROL)
        else:
            # llama.cpp's WPM tokenizer works on a "phantom space" vocab: word starts carry U+2581,
            # continuations lose their "##".
            tokens.append(token[2:] if token.startswith("##") else "\u2581" + token)
            types.append(gguf.TokenType.USER_DEFINED if token_id in added else gguf.TokenType.NORMAL)
    return tokens, types


def _tensors(model_dir: Path, hparams: dict) -> dict[str, np.ndarray]:
    """The checkpoint's tensors under their BERT names, checked against config.json's shapes."""
    path = model_dir / "model.safetensors"
    if not path.is_file():
        raise ConversionError(f"{path}: missing")
    arrays: dict[str, np.ndarray] = {}
    try:
        with safe_open(str(path), framework="np") as reader:
            for name in reader.keys():
                hf = _hf_name(name)
                if hf in _SKIPPED or hf.startswith(_SKIPPED_PREFIXES):
                    continue
                arrays[hf] = reader.get_tensor(name)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConversionError(f"{path}: unreadable safetensors file ({exc})") from exc
    want = expected_shapes(hparams)
    missing = sorted(set(want) - set(arrays))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ConversionError(f"{path}: missing tensor {shown}")
    for name, shape in want.items():
        if tuple(arrays[name].shape) != shape:
            raise ConversionError(f"{path}: tensor {name} has shape {tuple(arrays[name].shape)}, expected {shape}")
    extra = sorted(set(arrays) - set(want))
    if extra:
        raise ConversionError(f"{path}: cannot map tensor {extra[0]} to a BERT GGUF tensor")
    return arrays


def _tensor_type(new_name: str, array: np.ndarray) -> type:
    """The dtype convert_hf_to_gguf.py picks with --outtype f16: norms, biases and 1-D tensors stay F32."""
    if array.ndim <= 1 or new_name.endswith("_norm.weight") or not new_name.endswith(".weight"):
        return np.float32
    if any(new_name == gguf.TENSOR_NAMES[key] + ".weight" for key in _F32_KEYS):
        return np.float32
    return np.float16


def convert(model_dir: Path, out_path: Path, *, name: str, license: str = "apache-2.0",
            source_url: str = "") -> None:
    """Write `model_dir` (config.json, model.safetensors, tokenizer.json, modules.json) to `out_path`."""
    model_dir = Path(model_dir)
    hparams = _hparams(model_dir)
    pooling = _pooling_type(model_dir)
    tokens, types = _vocab(model_dir, hparams["vocab_size"])
    arrays = _tensors(model_dir, hparams)
    n_layers = hparams["num_hidden_layers"]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layers)

    writer = gguf.GGUFWriter(str(out_path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    try:
        for hf_name, array in arrays.items():
            new_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if new_name is None:
                raise ConversionError(f"{model_dir / 'model.safetensors'}: cannot map tensor {hf_name!r}")
            writer.add_tensor(new_name, np.ascontiguousarray(array.astype(_tensor_type(new_name, array))))

        total_params = writer.get_total_parameter_count()
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name)
        writer.add_size_label(gguf.size_label(*total_params))
        writer.add_license(license)
        if source_url:
            writer.add_source_url(source_url)
        # TextModel.set_gguf_parameters and BertModel.set_gguf_parameters
        writer.add_block_count(n_layers)
        writer.add_context_length(hparams["max_position_embeddings"])
        writer.add_embedding_length(hparams["hidden_size"])
        writer.add_feed_forward_length(hparams["intermediate_size"])
        writer.add_head_count(hparams["num_attention_heads"])
        writer.add_layer_norm_eps(hparams["layer_norm_eps"])
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        writer.add_causal_attention(False)
        if pooling is not None:
            writer.add_pooling_type(pooling)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        # BertModel.set_vocab
        writer.add_token_type_count(hparams.get("type_vocab_size", 1))
        writer.add_tokenizer_model("bert")
        writer.add_tokenizer_pre(TOKENIZER_PRE)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        # GGUF has no key for [CLS] (llama.cpp uses BOS for it): leaving "cls" out only skips a warning.
        special = gguf.SpecialVocab(model_dir, n_vocab=len(tokens),
                                    special_token_types=("bos", "eos", "unk", "sep", "pad", "mask"))
        special.add_to_gguf(writer, quiet=True)

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
