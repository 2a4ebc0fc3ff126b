"""The inference engine: llama-cpp-python on a GGUF file, with the model's own chat template."""
from __future__ import annotations

import codecs
import logging
import math
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .model import ModelInfo, template_for
from .options import BadRequest, GenOptions, context_window, fit_prompt, output_limit

log = logging.getLogger(__name__)


@dataclass
class Stats:
    """What one generation did, in Ollama's terms (durations in nanoseconds)."""

    prompt_eval_count: int = 0
    prompt_eval_ns: int = 0
    eval_count: int = 0
    eval_ns: int = 0
    load_ns: int = 0
    done_reason: str = "stop"
    first_token_at: float | None = None
    input_tokens: list[int] = field(default_factory=list)
    output_tokens: list[int] = field(default_factory=list)


class Engine(Protocol):
    """What the server needs from an engine; LlamaEngine and the tests' fake both provide it."""

    info: ModelInfo
    n_ctx: int

    def render_chat(self, messages: list[dict]) -> str: ...

    def tokenize(self, text: str) -> list[int]: ...

    def generate(self, tokens: list[int], opts: GenOptions, cancel: threading.Event, stats: Stats) -> Iterator[str]: ...

    # One row per text (lists of floats, or a 2-D numpy array, which the JSON writer takes) and the tokens
    # of each group of `sizes` consecutive texts (default: one group).
    def embed(self, texts: list[str], truncate: bool, sizes: list[int] | None = None) -> tuple[list[list[float]], list[int]]: ...

    def close(self) -> None: ...


def group_sums(each: list[int], sizes: list[int] | None) -> list[int]:
    """Per-text counts summed per group of `sizes` consecutive texts (default: one group, all of them)."""
    sums, at = [], 0
    for size in sizes or [len(each)]:
        sums.append(sum(each[at:at + size]))
        at += size
    return sums


def l2_normalize(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm > 0 else list(vector)


class StopMatcher:
    """Cuts text at the first stop string, holding back a tail that may begin one."""

    def __init__(self, stops: list[str]):
        self.stops = stops
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return (text safe to emit, whether a stop string was hit)."""
        self.pending += text
        if not self.stops:
            out, self.pending = self.pending, ""
            return out, False
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending = self.pending[: min(hits)], ""
            return out, True
        hold = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.pending)), hold, -1):
                if self.pending.endswith(stop[:n]):
                    hold = n
                    break
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def default_threads() -> int:
    """llama.cpp threads: half the cores, at least one (the rest serve the proxy, Prometheus and clients)."""
    return max(1, (os.cpu_count() or 2) // 2)


def build_llama_state(vocab_gguf: Path) -> None:
    """Build llama.cpp's one-time process state now (the server calls this at start), not inside the first
    model load: its backend, and the Unicode code-point table every tokenizer shares (2.1 MB, built on the
    first tokenization and kept for the life of the process by design). A vocabulary-only load of a small
    GGUF does it (~0.1 s; the caller then returns the freed heap with loader.release_heap). So the first
    cold load measures the model alone, and RSS after an unload is compared with an idle process that
    holds what no unload can free."""
    import llama_cpp
    from llama_cpp import _logger

    _logger.set_verbose(False)  # as Llama(verbose=False) does: no loader dump on stderr
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(vocab_gguf).encode("utf-8"), params)
    if model:
        llama_cpp.llama_model_free(model)


class LlamaEngine:
    """One llama.cpp context; not thread safe, so the scheduler runs one generation at a time."""

    def __init__(self, model_path: Path, tag: str, n_ctx: int = 2048, n_threads: int | None = None,
                 info: ModelInfo | None = None):
        from llama_cpp import Llama  # deferred: a 0.1 s import the tests' fake engine does not need
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        started = time.perf_counter()
        self._threads = n_threads or default_threads()
        self._path = Path(model_path)
        self.embedding_model = bool(info and info.is_embedding)
        # The context never exceeds what the model was trained for (all-MiniLM: 512).
        train_ctx = info.context_length if info and info.context_length else 0
        n_ctx = min(n_ctx, train_ctx) if train_ctx else n_ctx
        # The same count for prompt processing: llama.cpp's default (all cores) with OpenMP's spinning
        # threads collapses when the proxy and the load share the cores (docs/backend.md, Threads).
        kwargs = dict(n_ctx=n_ctx, n_threads=self._threads, n_threads_batch=self._threads, verbose=False)
        if self.embedding_model:
            kwargs.update(embedding=True, n_batch=n_ctx, n_ubatch=n_ctx)
        self._llama = Llama(str(model_path), **kwargs)
        self._embedder = None  # a chat model's embedding context, made on its first embedding request
        self.n_ctx = self._llama.n_ctx()
        self.n_ctx_train = self._llama._model.n_ctx_train()
        metadata = dict(self._llama.metadata)
        template = template_for(metadata)
        model = self._llama._model
        eos, bos = model.token_eos(), model.token_bos()
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )
        self._vocab = model.vocab
        if info is None:
            info = ModelInfo(tag=tag, path=Path(model_path), metadata=metadata, template=template)
        self.info = info
        self.memory_bytes = Path(model_path).stat().st_size + self._kv_bytes(metadata)
        self.load_seconds = time.perf_counter() - started
        log.info("loaded %s as %s in %.2f s (n_ctx %d)", model_path, tag, self.load_seconds, self.n_ctx)

    def _kv_bytes(self, metadata: dict[str, str], n_ctx: int | None = None) -> int:
        """f16 K and V for every layer and position: what the context adds to the file's size."""
        arch = metadata.get("general.architecture", "llama")
        try:
            layers = int(metadata[f"{arch}.block_count"])
            heads = int(metadata[f"{arch}.attention.head_count"])
            kv_heads = int(metadata.get(f"{arch}.attention.head_count_kv", heads))
            embed = int(metadata[f"{arch}.embedding_length"])
        except (KeyError, ValueError):
            return 0
        key_len = int(metadata.get(f"{arch}.attention.key_length", embed // heads))
        return 2 * 2 * layers * (n_ctx or self.n_ctx) * kv_heads * key_len

    def render_chat(self, messages: list[dict]) -> str:
        """The prompt text for a conversation, through the model's own template."""
        return self._formatter(messages=messages).prompt

    def tokenize(self, text: str) -> list[int]:
        # special=True: the template's <|im_start|> markers must become their control tokens.
        return self._llama.tokenize(text.encode("utf-8"), add_bos=self._llama._model.add_bos_token(), special=True)

    def detokenize(self, tokens: list[int]) -> str:
        return self._llama.detokenize(tokens).decode("utf-8", errors="replace")

    def generate(self, tokens: list[int], opts: GenOptions, cancel: threading.Event, stats: Stats) -> Iterator[str]:
        """Yield text pieces until EOS, a stop string, the length limit or cancel; fill stats."""
        from llama_cpp import llama_vocab_is_eog

        n_ctx = context_window(opts, self.n_ctx)
        tokens = fit_prompt(tokens, n_ctx, opts.num_predict)
        limit = output_limit(opts, len(tokens), n_ctx)
        stats.prompt_eval_count = len(tokens)
        if not tokens:
            return
        seed = opts.seed if opts.seed >= 0 else random.randint(0, 2**31 - 1)
        self._llama.set_seed(seed)
        if opts.seed >= 0:
            # Re-using the cached prompt prefix re-evaluates its last token alone, which rounds
            # differently from a full batch: a seeded request must get the same answer every time.
            self._llama.reset()
        stops = StopMatcher(opts.stop)
        # A token can end inside a multi-byte character; the incremental decoder holds those bytes.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stats.done_reason = "length"
        started = time.perf_counter()
        first = None
        if opts.grammar:
            from .grammar_sampler import constrained_tokens

            tokens_iter = constrained_tokens(self._llama, tokens, opts, opts.grammar, seed)
        else:
            tokens_iter = self._llama.generate(
                tokens,
                top_k=opts.top_k,
                top_p=opts.top_p,
                min_p=opts.min_p,
                typical_p=opts.typical_p,
                temp=opts.temperature,
                repeat_penalty=opts.repeat_penalty,
                presence_penalty=opts.presence_penalty,
                frequency_penalty=opts.frequency_penalty,
            )
        try:
            while limit > 0 and not cancel.is_set():
                token = next(tokens_iter)
                if first is None:
                    first = time.perf_counter()
                    stats.prompt_eval_ns = int((first - started) * 1e9)
                    stats.first_token_at = first
                if llama_vocab_is_eog(self._vocab, token):
                    stats.done_reason = "stop"
                    break
                stats.eval_count += 1
                stats.output_tokens.append(token)
                text, hit = stops.feed(decoder.decode(self._llama.detokenize([token])))
                if text:
                    yield text
                if hit:
                    stats.done_reason = "stop"
                    break
                if stats.eval_count >= limit:
                    break
            else:
                if cancel.is_set():
                    stats.done_reason = "cancel"
            # Text held back as a possible stop-string start turned out not to be one.
            tail = stops.flush() + decoder.decode(b"", final=True)
            if tail and stats.done_reason != "cancel":
                yield tail
        finally:
            tokens_iter.close()
            if first is not None:
                stats.eval_ns = int((time.perf_counter() - first) * 1e9)

    def embed(self, texts: list[str], truncate: bool, sizes: list[int] | None = None) -> tuple[list[list[float]], list[int]]:
        """L2-normalised vectors for texts (one batch) and the tokens evaluated for each group of `sizes`
        consecutive texts (default: one group, all of them)."""
        import numpy as np

        llama = self._llama if self.embedding_model else self._embedding_context()
        if not truncate:
            limit = llama.n_ctx()
            for text in texts:
                if len(llama.tokenize(text.encode("utf-8"), add_bos=True, special=False)) > limit:
                    raise BadRequest("input length exceeds maximum context length")
        vectors, count = llama.embed(texts, truncate=True, return_count=True)
        # float32, as llama.cpp computes them and Ollama returns them; rows of an array, which the
        # server's JSON writer (orjson) serialises without a Python float per value.
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = np.divide(matrix, norms, out=matrix, where=norms > 0)
        return matrix, self._group_counts(llama, texts, sizes, int(count))  # type: ignore[return-value]

    @staticmethod
    def _group_counts(llama, texts: list[str], sizes: list[int] | None, total: int) -> list[int]:
        """Llama.embed counts only the whole batch; a batch of several requests is counted per text
        (its tokens, cut at n_batch as Llama.embed cuts them) and summed per request."""
        if not sizes or len(sizes) == 1:
            return [total]
        each = [min(len(llama.tokenize(t.encode("utf-8"), add_bos=True, special=False)), llama.n_batch) for t in texts]
        return group_sums(each, sizes)

    def _embedding_context(self):
        """A chat model asked for embeddings: mean-pooled hidden states, as Ollama computes them for any model."""
        if self._embedder is None:
            from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama

            n_ctx = min(self.n_ctx, 2048)
            self._embedder = Llama(
                str(self._path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=self._threads,
                n_threads_batch=self._threads, embedding=True, pooling_type=LLAMA_POOLING_TYPE_MEAN, verbose=False,
            )
            self.memory_bytes += self._kv_bytes(dict(self._llama.metadata), n_ctx)
        return self._embedder

    def close(self) -> None:
        """Free the model, its contexts and llama-cpp-python's logits arrays, even if this object lingers."""
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None
        if self._llama is not None:
            self._llama.close()
            self._llama = None
