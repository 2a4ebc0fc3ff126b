"""Test helpers for the embedded backend: FakeEngine (a deterministic stand-in for llama.cpp) and a server thread."""
from __future__ import annotations

import functools
import re
import struct
import threading
import time
from pathlib import Path

from llmops.backend.engine import group_sums, l2_normalize
from llmops.backend.model import ModelInfo
from llmops.backend.options import BadRequest, GenOptions
from llmops.backend.server import start
from tests.support import helpers, serverthread

FAKE_TAG = "fake:1m"


class FakeSampler:
    """A fake sequence's sampler: its k-th token is k (the word f"w{k}"); it records the batch rows it read."""

    def __init__(self, engine: FakeEngine, opts: GenOptions, seed: int):
        self.engine, self.opts, self.seed = engine, opts, seed
        self.count = 0
        self.seen: list[tuple[int, int]] = []  # (sequence id, position) of every row it sampled from
        self.freed = False

    def sample(self, row: int) -> int:
        self.seen.append(self.engine.rows[row])
        token = self.count
        self.count += 1
        return token

    def free(self) -> None:
        self.freed = True
        self.engine.finished.set()


class ScriptedSampler(FakeSampler):
    """A sampler that answers a scripted text, a word a token (spaces kept), then the end-of-generation
    token; num_predict cuts it as the slots cut any answer. No grammar is applied."""

    def __init__(self, engine: FakeEngine, opts: GenOptions, seed: int, answer: str):
        super().__init__(engine, opts, seed)
        self.tokens = [engine.word_token(word) for word in re.findall(r"\S+\s*|\s+", answer)]

    def sample(self, row: int) -> int:
        self.seen.append(self.engine.rows[row])
        token = self.tokens[self.count] if self.count < len(self.tokens) else EOG
        self.count += 1
        return token


EOG = -1  # FakeEngine's end-of-generation token
_WORD_BASE = 1 << 20  # scripted words are tokens from here on (the counting answer's tokens stay below)


class FakeEngine:
    """Stand-in engine: token i of any answer is the word f"w{i}"; no model, no randomness. It is a
    slots.BatchModel with `n_slots` sequences: it records every batch and which KV cells each sequence holds.

    `gate` (when given) must be set for a decode step to run, so tests can hold generations open;
    `started` (a sequence got its sampler) and `finished` (a sampler was freed) let tests wait on a
    generation instead of sleeping; `token_delay` is the time one decode step takes. `answers` scripts
    the next generations' texts (one each, in order, instead of the counting answer); `options` records
    every generation's options.
    """

    def __init__(self, model_file: Path, tag: str = FAKE_TAG, n_ctx: int = 4096, token_delay: float = 0.0,
                 gate: threading.Event | None = None, info: ModelInfo | None = None, n_slots: int = 1):
        if info is None:
            model_file.write_bytes(b"GGUF fake model file")
            info = ModelInfo(
                tag=tag, path=model_file, template="{{ messages }}", context_length=n_ctx,
                metadata={"general.architecture": "fake", "general.file_type": "3", "general.size_label": "1M",
                          "llama.context_length": "4096"},
            )
        self.info = info
        self.memory_bytes = info.size + 1000
        self.closed = False
        self.embed_calls: list[list[str]] = []
        self.last_opts: GenOptions | None = None
        self.n_ctx = n_ctx
        self.n_slots = n_slots
        self.token_delay = token_delay
        self.gate = gate
        self.started = threading.Event()
        self.finished = threading.Event()
        self.calls = 0
        self.prompts: list[str] = []  # in the order the engine thread took them
        self.samplers: list[FakeSampler] = []
        self.batches: list[list[tuple[int, int, int, bool]]] = []  # (seq, tokens, first position, logits)
        self.cells: dict[int, set[int]] = {}  # the KV positions each sequence holds
        self.rows: list[tuple[int, int]] = []  # the last batch's rows: (sequence, position)
        self.fail_next_decode: Exception | None = None
        self.answers: list[str] = []  # scripted answers, one per generation (whitespace-split tokens)
        self.options: list[GenOptions] = []  # every generation's options, in order
        self._words: list[str] = []  # the scripted words' texts, token _WORD_BASE + i

    def render_chat(self, messages: list[dict]) -> str:
        if any(m["role"] == "bad" for m in messages):
            raise ValueError("Conversation roles must alternate")  # what a jinja template raises
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def tokenize(self, text: str) -> list[int]:
        self.prompts.append(text)
        return [len(word) for word in text.split()] or [0]

    @property
    def last_sampler(self) -> FakeSampler | None:
        return self.samplers[-1] if self.samplers else None

    # -- slots.BatchModel ------------------------------------------------------------------------
    def decode(self, entries: list[tuple[int, list[int], int, bool]]) -> list[int]:
        if self.gate is not None:
            deadline = time.monotonic() + 30
            while not self.gate.wait(0.01) and time.monotonic() < deadline and not self.closed:
                pass
        if self.token_delay:
            time.sleep(self.token_delay)
        if self.fail_next_decode is not None:
            error, self.fail_next_decode = self.fail_next_decode, None
            raise error
        self.batches.append([(seq, len(tokens), pos, want) for seq, tokens, pos, want in entries])
        self.rows = []
        for seq, tokens, pos, _want in entries:
            held = self.cells.setdefault(seq, set())
            for j in range(len(tokens)):
                assert pos + j not in held, f"sequence {seq} already holds position {pos + j}"
                held.add(pos + j)
                self.rows.append((seq, pos + j))
        rows, at = [], 0
        for _seq, tokens, _pos, _want in entries:
            at += len(tokens)
            rows.append(at - 1)
        return rows

    def sampler(self, opts: GenOptions, seed: int) -> FakeSampler:
        self.calls += 1
        self.last_opts = opts
        self.options.append(opts)
        self.finished.clear()
        if self.answers:
            sampler = ScriptedSampler(self, opts, seed, self.answers.pop(0))
        else:
            sampler = FakeSampler(self, opts, seed)
        self.samplers.append(sampler)
        self.started.set()
        return sampler

    def word_token(self, word: str) -> int:
        self._words.append(word)
        return _WORD_BASE + len(self._words) - 1

    def is_eog(self, token: int) -> bool:
        return token == EOG

    def piece(self, token: int) -> bytes:
        if token >= _WORD_BASE:
            return self._words[token - _WORD_BASE].encode()
        return (f"w{token}" if token == 0 else f" w{token}").encode()

    def seq_rm(self, seq: int, p0: int, p1: int) -> None:
        held = self.cells.setdefault(seq, set())
        end = p1 if p1 >= 0 else 1 << 30
        start = p0 if p0 >= 0 else 0
        self.cells[seq] = {p for p in held if not start <= p < end}

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        end = p1 if p1 >= 0 else 1 << 30
        self.cells.setdefault(dst, set()).update(p for p in self.cells.get(src, ()) if max(p0, 0) <= p < end)

    def embed(self, texts: list[str], truncate: bool, sizes: list[int] | None = None) -> tuple[list[list[float]], list[int]]:
        """A deterministic 8-dimensional vector of letter counts per text, L2-normalised, and the words of
        each group of `sizes` texts."""
        self.embed_calls.append(list(texts))
        counts = []
        vectors = []
        for text in texts:
            words = text.split()
            if len(words) > self.n_ctx and not truncate:
                raise BadRequest("input length exceeds maximum context length")
            words = words[: self.n_ctx]
            counts.append(len(words))
            raw = [float(sum(ch in "aeiou"[i % 5] + "bcdfg"[i % 5] for ch in " ".join(words))) + 1.0 for i in range(8)]
            vectors.append(l2_normalize(raw))
        return vectors, group_sums(counts, sizes)

    def close(self) -> None:
        self.closed = True


def write_gguf(path: Path, arch: str = "llama", *, pooling: bool = False, file_type: int = 3, ctx: int = 4096,
               template: str | None = None, params: int = 1_000_000) -> Path:
    """A tiny but well-formed GGUF v3 header (metadata and one tensor entry, no weights) for registry tests."""
    def string(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    kv = [("general.architecture", 8, string(arch)), ("general.file_type", 4, struct.pack("<I", file_type)),
          (f"{arch}.context_length", 4, struct.pack("<I", ctx)), (f"{arch}.embedding_length", 4, struct.pack("<I", 8))]
    if pooling:
        kv.append((f"{arch}.pooling_type", 4, struct.pack("<I", 1)))
    if template:
        kv.append(("tokenizer.chat_template", 8, string(template)))
    body = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kv))
    for key, kind, value in kv:
        body += string(key) + struct.pack("<I", kind) + value
    body += string("token_embd.weight") + struct.pack("<I", 1) + struct.pack("<Q", params) + struct.pack("<IQ", 0, 0)
    path.write_bytes(body)
    return path


def expected_text(n: int) -> str:
    """What FakeEngine answers with num_predict=n."""
    return " ".join(f"w{i}" for i in range(n))


class ServerThread(serverthread.ServerThread):
    """The backend's app on 127.0.0.1:<free port>, started as `llmops backend serve` starts it (server.start)."""

    def __init__(self, app):
        super().__init__(app, name="test-backend", serve_app=lambda a: start(a, "127.0.0.1", 0))


# The backend's own fakes answer in milliseconds: poll often.
wait_for = functools.partial(helpers.wait_for, poll=0.005)


class FakeVocab:
    """A tokenizer stand-in for /api/tokenize: a word is one token, its length; add_special puts 1 (a BOS) first.
    `loads` and `closed` (class-wide, per model tag) let tests see what was loaded and given back."""

    BOS = 1

    def __init__(self, tag: str, log: dict[str, list[str]]):
        self.tag, self.log = tag, log
        log.setdefault("loaded", []).append(tag)

    @classmethod
    def loader(cls, log: dict[str, list[str]]):
        return lambda entry: cls(entry.tag, log)

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        return ([self.BOS] if add_special else []) + [len(word) for word in text.split()]

    def close(self) -> None:
        self.log.setdefault("closed", []).append(self.tag)
