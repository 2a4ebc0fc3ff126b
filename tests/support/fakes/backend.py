"""Test helpers for the embedded backend: FakeEngine (a deterministic stand-in for llama.cpp) and a server thread."""
from __future__ import annotations

import functools
import struct
import threading
import time
from pathlib import Path

from llmops.backend.engine import Stats, StopMatcher, group_sums, l2_normalize
from llmops.backend.model import ModelInfo
from llmops.backend.options import BadRequest, GenOptions, context_window, fit_prompt, output_limit
from llmops.backend.server import start
from tests.support import helpers, serverthread

FAKE_TAG = "fake:1m"


class FakeEngine:
    """Stand-in engine: token i of any answer is the word f"w{i}"; no model, no randomness.

    `gate` (when given) must be set for tokens to flow, so tests can hold a generation open;
    `started` and `finished` let tests wait on a generation instead of sleeping.
    """

    def __init__(self, model_file: Path, tag: str = FAKE_TAG, n_ctx: int = 4096, token_delay: float = 0.0,
                 gate: threading.Event | None = None, info: ModelInfo | None = None):
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
        self.token_delay = token_delay
        self.gate = gate
        self.started = threading.Event()
        self.finished = threading.Event()
        self.last_stats: Stats | None = None
        self.calls = 0
        self.prompts: list[str] = []  # in the order the engine thread took them
        self.answers: list[str] = []  # scripted answers, one per generation (whitespace-split tokens)
        self.options: list[GenOptions] = []  # every generation's options, in order

    def render_chat(self, messages: list[dict]) -> str:
        if any(m["role"] == "bad" for m in messages):
            raise ValueError("Conversation roles must alternate")  # what a jinja template raises
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def tokenize(self, text: str) -> list[int]:
        self.prompts.append(text)
        return [len(word) for word in text.split()] or [0]

    def generate(self, tokens: list[int], opts: GenOptions, cancel: threading.Event, stats: Stats):
        self.calls += 1
        self.last_opts = opts
        self.options.append(opts)
        if self.answers:
            yield from self._scripted(self.answers.pop(0), tokens, opts, stats)
            return
        self.finished.clear()
        self.last_stats = stats
        n_ctx = context_window(opts, self.n_ctx)
        tokens = fit_prompt(tokens, n_ctx, opts.num_predict)
        limit = output_limit(opts, len(tokens), n_ctx)
        stats.prompt_eval_count = len(tokens)
        stats.prompt_eval_ns = 1000 * len(tokens)
        stops = StopMatcher(opts.stop)
        stats.done_reason = "length"
        self.started.set()
        began = time.perf_counter()
        try:
            for i in range(limit):
                if self.gate is not None:
                    while not self.gate.wait(0.01):
                        if cancel.is_set():
                            break
                if cancel.is_set():
                    stats.done_reason = "cancel"
                    return
                if self.token_delay:
                    time.sleep(self.token_delay)
                if i == 0:
                    stats.first_token_at = time.perf_counter()
                stats.eval_count += 1
                stats.output_tokens.append(i)
                text, hit = stops.feed(f"w{i}" if i == 0 else f" w{i}")
                if text:
                    yield text
                if hit:
                    stats.done_reason = "stop"
                    return
            tail = stops.flush()
            if tail:
                yield tail
        finally:
            stats.eval_ns = int((time.perf_counter() - began) * 1e9)
            self.finished.set()

    def _scripted(self, answer: str, tokens: list[int], opts: GenOptions, stats: Stats):
        """A scripted answer, a word a token (spaces kept), cut at num_predict; no grammar is applied."""
        import re

        words = re.findall(r"\S+\s*|\s+", answer)
        limit = opts.num_predict if opts.num_predict > 0 else len(words)
        stats.prompt_eval_count = len(tokens)
        stats.done_reason = "length" if len(words) > limit else "stop"
        stats.first_token_at = time.perf_counter()
        for word in words[:limit]:
            stats.eval_count += 1
            stats.output_tokens.append(len(word))
            yield word
        self.finished.set()

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
