"""The inference engine: llama-cpp-python on a GGUF file, with the model's own chat template."""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .model import ModelInfo, template_for
from .options import BadRequest, GenOptions

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


class DecodeError(RuntimeError):
    """llama_decode failed for a batch; its sequences end with this error."""


class Engine(Protocol):
    """What the server needs from an engine; LlamaEngine and the tests' fake both provide it. A chat engine
    is also a slots.BatchModel: n_slots sequences decoded in batches (decode, sampler, seq_rm, seq_cp...)."""

    info: ModelInfo
    n_ctx: int  # one slot's context
    n_slots: int

    def render_chat(self, messages: list[dict]) -> str: ...

    def tokenize(self, text: str) -> list[int]: ...

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
    model load: its backend, and the Unicode code-point table every tokenizer shares (built on the first
    tokenization and kept for the life of the process by design). A vocabulary-only load of a small GGUF
    does it (the caller then returns the freed heap with loader.release_heap). So the first cold load
    measures the model alone, and RSS after an unload is compared with an idle process that holds what no
    unload can free. Sizes and times: docs/backend.md ("RSS after unload")."""
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
    """One llama.cpp context holding `n_slots` sequences of `n_ctx` positions each (a unified KV cache of
    n_ctx x n_slots cells, as Ollama sizes it); the scheduler's engine thread is its only user."""

    def __init__(self, model_path: Path, tag: str, n_ctx: int = 2048, n_threads: int | None = None,
                 info: ModelInfo | None = None, n_slots: int = 1, n_batch: int = 512):
        import llama_cpp
        from llama_cpp import Llama  # deferred: a 0.1 s import the tests' fake engine does not need
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        started = time.perf_counter()
        self._threads = n_threads or default_threads()
        self._path = Path(model_path)
        self.embedding_model = bool(info and info.is_embedding)
        self.closed = False
        # The context never exceeds what the model was trained for (all-MiniLM: 512), per sequence.
        train_ctx = info.context_length if info and info.context_length else 0
        n_ctx = min(n_ctx, train_ctx) if train_ctx else n_ctx
        self.n_slots = 1 if self.embedding_model else max(1, n_slots)
        # The same count for prompt processing: llama.cpp's default (all cores) with OpenMP's spinning
        # threads collapses when the proxy and the load share the cores (docs/backend.md, Threads).
        kwargs = dict(n_ctx=n_ctx, n_threads=self._threads, n_threads_batch=self._threads, verbose=False)
        if self.embedding_model:
            kwargs.update(embedding=True, n_batch=n_ctx, n_ubatch=n_ctx)
        else:
            # Llama's own context is only a placeholder: the slots get a context of their own below.
            kwargs.update(n_ctx=64, n_batch=64, n_ubatch=64)
        self._llama = Llama(str(model_path), **kwargs)
        self._embedder = None  # a chat model's embedding context, made on its first embedding request
        self._ctx = None
        self._batch = None
        if self.embedding_model:
            self.n_ctx = self._llama.n_ctx()
        else:
            self._llama._ctx.close()  # the placeholder's KV cache goes at once
            params = llama_cpp.llama_context_default_params()
            params.n_ctx = n_ctx * self.n_slots
            self.n_batch = max(n_batch, 64)
            params.n_batch = params.n_ubatch = self.n_batch
            params.n_seq_max = self.n_slots
            params.n_threads = params.n_threads_batch = self._threads
            # A KV stream per sequence (llama.cpp's default for several sequences): each sequence's cells sit
            # where they would alone, so its attention sums in the same order and a greedy answer does not
            # depend on the batch (with one unified cache, 2 of 4 test prompts changed); a shared prefix is
            # copied between streams (seq_cp).
            params.kv_unified = False
            # Sliding-window layers (Gemma) keep every position, so that a cached prefix can be reused.
            params.swa_full = True
            params.no_perf = True
            from llama_cpp import _internals

            self._context = _internals.LlamaContext(model=self._llama._model, params=params, verbose=False)
            self._ctx = self._context.ctx
            self._memory = llama_cpp.llama_get_memory(self._ctx)
            self.n_ctx = llama_cpp.llama_n_ctx(self._ctx) // self.n_slots
            self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
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
        self._n_vocab = self._llama.n_vocab()
        self._eog = None
        if info is None:
            info = ModelInfo(tag=tag, path=Path(model_path), metadata=metadata, template=template)
        self.info = info
        self.memory_bytes = Path(model_path).stat().st_size + self._kv_bytes(metadata, self.n_ctx * self.n_slots)
        self.load_seconds = time.perf_counter() - started
        log.info("loaded %s as %s in %.2f s (n_ctx %d x %d slots)", model_path, tag, self.load_seconds, self.n_ctx,
                 self.n_slots)

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

    # -- slots.BatchModel ------------------------------------------------------------------------
    def decode(self, entries: list[tuple[int, list[int], int, bool]]) -> list[int]:
        """One llama_decode over every entry's tokens (each with its own sequence id and positions)."""
        import llama_cpp

        batch = self._batch
        n, rows = 0, []
        for seq, tokens, pos, want in entries:
            last = len(tokens) - 1
            for j, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = pos + j
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = want and j == last
                n += 1
            rows.append(n - 1)
        if n > self.n_batch:
            raise DecodeError(f"batch of {n} tokens exceeds n_batch {self.n_batch}")
        batch.n_tokens = n
        code = llama_cpp.llama_decode(self._ctx, batch)
        if code != 0:
            raise DecodeError(f"llama_decode returned {code}" + (" (no room in the KV cache)" if code == 1 else ""))
        return rows

    def sampler(self, opts: GenOptions, seed: int):
        from .grammar_sampler import TextFirst, make_sampler, row_logits

        sampler = make_sampler(self._ctx, self._vocab, self._n_vocab, opts, seed)
        if opts.text_required:
            sampler = TextFirst(sampler, lambda row: row_logits(self._ctx, row, self._n_vocab), self._eog_tokens(),
                                self.piece)
        return sampler

    def _eog_tokens(self):
        """The vocabulary's end-of-generation tokens (EOS, EOT, <|im_end|>...), found once."""
        if self._eog is None:
            import numpy as np

            self._eog = np.array([t for t in range(self._n_vocab) if self.is_eog(t)], dtype=np.int64)
        return self._eog

    def is_eog(self, token: int) -> bool:
        from llama_cpp import llama_vocab_is_eog

        return bool(llama_vocab_is_eog(self._vocab, token))

    def piece(self, token: int) -> bytes:
        return self._llama.detokenize([token])

    def seq_rm(self, seq: int, p0: int, p1: int) -> None:
        from llama_cpp import llama_memory_seq_rm

        if not llama_memory_seq_rm(self._memory, seq, p0, p1):
            llama_memory_seq_rm(self._memory, seq, -1, -1)  # a partial removal that fails: drop it all

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        """Between two streams llama.cpp copies the source's whole stream (at the next decode); the cells past
        the range are then dropped from the destination."""
        from llama_cpp import llama_memory_seq_cp, llama_memory_seq_rm

        llama_memory_seq_cp(self._memory, src, dst, -1, -1)
        if p0 > 0:
            llama_memory_seq_rm(self._memory, dst, 0, p0)
        if p1 >= 0:
            llama_memory_seq_rm(self._memory, dst, p1, -1)

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
        self.closed = True
        if self._batch is not None:
            import llama_cpp

            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            self._context.close()
            self._ctx = None
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None
        if self._llama is not None:
            self._llama.close()
            self._llama = None
