"""Grammar-constrained sampling that checks the grammar on the top-k candidates first.

llama-cpp-python 0.3.36 puts llama.cpp's grammar sampler before top-k, so the grammar judges the
whole vocabulary for every token (49k candidates for SmolLM2, 262k for Gemma 3): JSON mode ran at a
quarter to a half of the free speed. llama.cpp's own common sampler instead samples from the top
candidates and falls back to the full vocabulary only when none of them fits the grammar; this does
the same with llama.cpp's samplers, so the distribution is the grammar-masked one whenever a top-k
candidate is allowed, and exactly llama-cpp-python's otherwise.
"""
from __future__ import annotations

import ctypes
import re
from collections.abc import Callable

import numpy as np

_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


class _Chain:
    """A llama.cpp sampler chain, freed with this object."""

    def __init__(self, *samplers):
        import llama_cpp

        self._lib = llama_cpp
        self.ptr = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        for sampler in samplers:
            llama_cpp.llama_sampler_chain_add(self.ptr, sampler)

    def apply(self, arr) -> None:
        self._lib.llama_sampler_apply(self.ptr, ctypes.byref(arr))

    def accept(self, token: int) -> None:
        self._lib.llama_sampler_accept(self.ptr, token)

    def free(self) -> None:
        if self.ptr:
            self._lib.llama_sampler_free(self.ptr)
            self.ptr = None


def row_logits(ctx, row: int, n_vocab: int) -> np.ndarray:
    """A writable view of a batch row's logits in the context (what every sampler reads)."""
    import llama_cpp

    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(n_vocab,))


def _keep_allowed(arr) -> int:
    """Drop the candidates the grammar ruled out (-inf): typical and top-p sampling turn them into NaN."""
    view = np.ctypeslib.as_array(arr.data, shape=(arr.size,))
    allowed = np.isfinite(view["logit"])
    count = int(allowed.sum())
    if count:
        view[:count] = view[allowed]
        arr.size, arr.sorted = count, False
    return count


def _tail(llama_cpp, opts, seed: int) -> list:
    """The samplers after top-k, in llama-cpp-python's order (greedy at temperature 0)."""
    if opts.temperature <= 0:
        return [llama_cpp.llama_sampler_init_greedy()]
    return [
        llama_cpp.llama_sampler_init_typical(opts.typical_p, 1),
        llama_cpp.llama_sampler_init_top_p(opts.top_p, 1),
        llama_cpp.llama_sampler_init_min_p(opts.min_p, 1),
        llama_cpp.llama_sampler_init_temp(opts.temperature),
        llama_cpp.llama_sampler_init_dist(seed),
    ]


def _penalties(llama_cpp, n_vocab: int, opts):
    # Arguments as llama-cpp-python's own add_penalties passes them (n_vocab first, last 64 tokens).
    return llama_cpp.llama_sampler_init_penalties(n_vocab, 64, opts.repeat_penalty, opts.frequency_penalty,
                                                  opts.presence_penalty)


class ChainSampler:
    """One sequence's unconstrained sampler chain (penalties, top-k, typical, top-p, min-p, temperature, seed),
    as llama-cpp-python builds it, sampling from any row of a batch's logits."""

    def __init__(self, ctx, n_vocab: int, opts, seed: int):
        import llama_cpp

        self._lib, self._ctx = llama_cpp, ctx
        samplers = [_penalties(llama_cpp, n_vocab, opts)]
        if opts.temperature > 0:
            samplers.append(llama_cpp.llama_sampler_init_top_k(opts.top_k))
        self._chain = _Chain(*samplers, *_tail(llama_cpp, opts, seed))

    def sample(self, row: int) -> int:
        """Sample from the batch row's logits and accept the token (llama_sampler_sample does both)."""
        return int(self._lib.llama_sampler_sample(self._chain.ptr, self._ctx, row))

    def free(self) -> None:
        self._chain.free()


def trigger_pattern(trigger: str) -> str:
    """llama.cpp matches a lazy grammar's patterns against all the output so far; the grammar then reads
    from the first capture group on (as llama.cpp's common code builds patterns from trigger words)."""
    return r"[\s\S]*?(" + re.escape(trigger) + r")[\s\S]*"


def grammar_sampler(vocab, gbnf: str, triggers: list[str] | None = None):
    """A llama.cpp grammar sampler for GenOptions.grammar, lazy when GenOptions.grammar_triggers is set.

    The one hook a sampler chain needs (GrammarSampler's, or any other chain): the caller owns the
    returned pointer (llama_sampler_free, or a chain that frees it)."""
    import llama_cpp

    if triggers:
        patterns = [trigger_pattern(t).encode("utf-8") for t in triggers]
        array = (ctypes.c_char_p * len(patterns))(*patterns)
        sampler = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
            vocab, gbnf.encode("utf-8"), b"root", array, len(patterns), None, 0)
    else:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
    if not sampler:
        raise ValueError("llama.cpp could not parse the grammar")
    return sampler


class GrammarSampler:
    """One sequence's grammar-constrained sampler: the grammar judges the top-k candidates first, and the
    whole vocabulary only when none of them fits (see the module docstring)."""

    def __init__(self, ctx, vocab, n_vocab: int, opts, gbnf: str, seed: int, triggers: list[str] | None = None):
        import llama_cpp

        self._lib, self._ctx, self._n_vocab = llama_cpp, ctx, n_vocab
        self._grammar = _Chain(grammar_sampler(vocab, gbnf, triggers))
        top_k = opts.top_k if opts.top_k > 0 else 40
        self._head = _Chain(_penalties(llama_cpp, n_vocab, opts), llama_cpp.llama_sampler_init_top_k(top_k))
        self._wide_top_k = _Chain(llama_cpp.llama_sampler_init_top_k(top_k))
        self._tail = _Chain(*_tail(llama_cpp, opts, seed))
        self._cells = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._arr = llama_cpp.llama_token_data_array(
            data=self._cells.ctypes.data_as(llama_cpp.llama_token_data_p), size=n_vocab, selected=-1, sorted=False,
        )

    def _fill(self, row: int) -> None:
        lib, arr, cells = self._lib, self._arr, self._cells
        logits = row_logits(self._ctx, row, self._n_vocab)
        cells["id"] = self._ids
        cells["logit"] = logits
        cells["p"] = 0.0
        arr.data = cells.ctypes.data_as(lib.llama_token_data_p)
        arr.size, arr.selected, arr.sorted = self._n_vocab, -1, False

    def sample(self, row: int) -> int:
        """Sample a grammar-allowed token from the batch row's logits and accept it."""
        arr = self._arr
        self._fill(row)
        self._head.apply(arr)
        self._grammar.apply(arr)
        if not _keep_allowed(arr):
            # No top-k candidate fits: the grammar judges the whole vocabulary, as llama-cpp-python does.
            self._fill(row)
            self._grammar.apply(arr)
            if not _keep_allowed(arr):
                raise ValueError("the grammar allows no token here")
            self._wide_top_k.apply(arr)
        self._tail.apply(arr)
        token = int(np.ctypeslib.as_array(arr.data, shape=(arr.size,))["id"][arr.selected])
        for chain in (self._head, self._grammar, self._tail):
            chain.accept(token)
        return token

    def free(self) -> None:
        for chain in (self._head, self._wide_top_k, self._tail, self._grammar):
            chain.free()


class TextFirst:
    """A sampler whose answer must hold visible text: until a token with visible text is sampled, the
    end-of-generation tokens are masked out of the row's logits (set to -inf) before the inner sampler
    reads them, so the answer cannot end empty or blank (a tool chat's text answer)."""

    def __init__(self, inner, logits: Callable[[int], np.ndarray], eog: np.ndarray, piece: Callable[[int], bytes]):
        self._inner, self._logits, self._eog, self._piece = inner, logits, eog, piece
        self.seen_text = False

    def sample(self, row: int) -> int:
        if not self.seen_text:
            self._logits(row)[self._eog] = -np.inf
        token = self._inner.sample(row)
        if not self.seen_text and self._piece(token).strip():
            self.seen_text = True
        return token

    def free(self) -> None:
        self._inner.free()


def make_sampler(ctx, vocab, n_vocab: int, opts, seed: int):
    """The sampler a sequence's options ask for: grammar-constrained (whole answer, or lazy from a trigger)
    or a plain chain."""
    if opts.grammar:
        return GrammarSampler(ctx, vocab, n_vocab, opts, opts.grammar, seed, opts.grammar_triggers or None)
    return ChainSampler(ctx, n_vocab, opts, seed)
