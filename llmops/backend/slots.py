"""Parallel slots of one loaded model: continuous batching over one llama.cpp context.

A model has `n_slots` sequences in one context (Ollama's OLLAMA_NUM_PARALLEL, llama-server's --parallel).
Each decode step is one batch: one token for every sequence that is generating, and prompt chunks of
the sequences that are still being prefilled (at most `prefill_chunk` prompt tokens a step, so that a
long prompt does not stall the streams already running). A new sequence joins at the next step; a
sequence that ends or is cancelled leaves its slot at once. This module is pure scheduling over the
`BatchModel` protocol: the real engine implements it with llama.cpp, the unit tests with a fake.

Prompt cache: a slot keeps the tokens whose KV cells it holds after a sequence ends well (prompt and
answer). A new sequence takes the free slot whose cached tokens share the longest prefix with its prompt
(llama-server's slot similarity), and when another slot, busy or free, holds a longer prefix, those
cells are shared into the chosen sequence (llama.cpp's seq_cp) instead of being evaluated again.
A sequence whose prompt shares a longer prefix with one that is still being prefilled (requests that
arrive together with the same system prompt, before any slot holds it) waits for that one to evaluate
the shared part and copies it, rather than evaluating the same tokens beside it.
A cancelled or failed sequence gives its cells back (seq_rm), so they count as free at once.
"""
from __future__ import annotations

import codecs
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .engine import DecodeError, Stats, StopMatcher  # noqa: F401 - DecodeError is part of BatchModel's contract
from .options import GenOptions, context_window, fit_prompt, output_limit

log = logging.getLogger(__name__)


class Sampler(Protocol):
    """One sequence's sampler chain (its own temperature, penalties, seed and grammar)."""

    def sample(self, row: int) -> int:
        """Sample from a row of the last batch's logits, and accept the token into the chain."""
        ...

    def free(self) -> None: ...


class BatchModel(Protocol):
    """What the slots need from a loaded model; LlamaEngine and the tests' fake provide it."""

    n_slots: int
    n_ctx: int  # one slot's context (positions a sequence may use)

    def decode(self, entries: list[tuple[int, list[int], int, bool]]) -> list[int]:
        """Evaluate one batch: (seq id, tokens, first position, logits wanted for the last token) per entry;
        returns the batch row of each entry's last token (for Sampler.sample). Raises DecodeError."""
        ...

    def sampler(self, opts: GenOptions, seed: int) -> Sampler: ...

    def is_eog(self, token: int) -> bool: ...

    def piece(self, token: int) -> bytes: ...

    def seq_rm(self, seq: int, p0: int, p1: int) -> None:
        """Drop the sequence's cells in [p0, p1); -1 means open."""
        ...

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        """Share the cells of src in [p0, p1) with dst."""
        ...


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class Sequence:
    """One generation: its prompt, options and the callbacks that carry its text and its end."""

    tokens: list[int]
    opts: GenOptions
    stats: Stats
    cancel: threading.Event
    emit: Callable[[str], None]
    # Called exactly once, on the engine thread, when the sequence has left its slot (error or None).
    done: Callable[[BaseException | None], None]
    # runtime state, set by SlotBatcher.join
    slot: Slot | None = None
    n_eval: int = 0  # prompt tokens whose KV the slot holds
    limit: int = 0
    sampler: Sampler | None = None
    pending: int | None = None  # the last sampled token, evaluated at the next step
    joined_at: float = 0.0
    stops: StopMatcher | None = None
    decoder: codecs.IncrementalDecoder | None = None
    leader: Sequence | None = None  # a sequence still prefilling the prefix this one waits to copy
    follow: int = 0  # the length of that prefix


    @property
    def prefilling(self) -> bool:
        return self.n_eval < len(self.tokens)


@dataclass
class Slot:
    id: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV cells this sequence id holds
    seq: Sequence | None = None
    last_used: int = 0


class SlotBatcher:
    """The slots of one model; every method runs on the engine thread."""

    def __init__(self, model: BatchModel, prefill_chunk: int = 128, clock: Callable[[], float] = time.perf_counter,
                 on_step: Callable[[int, int, int], None] | None = None):
        self.model = model
        self.prefill_chunk = max(1, prefill_chunk)
        self.clock = clock
        self.on_step = on_step  # (sequences in the batch, prompt tokens, generated tokens) after each step
        self.slots = [Slot(i) for i in range(max(1, model.n_slots))]
        self._rr = 0  # where the prefill round-robin starts
        self._uses = 0
        self.steps = 0

    # -- state ---------------------------------------------------------------------------------
    @property
    def busy(self) -> int:
        return sum(1 for s in self.slots if s.seq is not None)

    @property
    def free(self) -> int:
        return len(self.slots) - self.busy

    def cells_used(self) -> int:
        """KV cells the slots hold (a prefix shared between sequences is counted in each: an upper bound)."""
        return sum(len(slot.cached) for slot in self.slots)

    # -- joining -------------------------------------------------------------------------------
    def join(self, seq: Sequence) -> None:
        """Give seq a free slot (the one sharing the longest prefix with its prompt); it is decoded from the
        next step on. ValueError when no slot is free (the scheduler admits no more than there are)."""
        free = [s for s in self.slots if s.seq is None]
        if not free:
            raise ValueError("no free slot")
        opts = seq.opts
        n_ctx = context_window(opts, self.model.n_ctx)
        seq.tokens = fit_prompt(seq.tokens, n_ctx, opts.num_predict)
        seq.limit = output_limit(opts, len(seq.tokens), n_ctx)
        seq.stats.prompt_eval_count = len(seq.tokens)
        seq.stats.done_reason = "length"
        seq.joined_at = self.clock()
        seq.stops = StopMatcher(opts.stop)
        seq.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # Re-using a cached prefix evaluates the rest of the prompt in other batches than a cold request
        # does, which rounds differently: a seeded request evaluates its whole prompt, so it gets the same
        # answer every time (as the one-slot engine did).
        reuse = opts.seed < 0
        tokens = seq.tokens
        slot = max(free, key=lambda s: (common_prefix(s.cached, tokens) if reuse else 0, -s.last_used))
        seq.slot, slot.seq = slot, seq
        self._uses += 1
        slot.last_used = self._uses
        if not tokens or seq.limit <= 0:
            seq.stats.done_reason = "stop" if not tokens else "length"
            self._finish(seq, seq.stats.done_reason)
            return
        keep = common_prefix(slot.cached, tokens) if reuse else 0
        donor, shared = None, keep
        if reuse:
            for other in self.slots:
                if other is not slot:
                    n = common_prefix(other.cached, tokens)
                    if n > shared:
                        donor, shared = other, n
        keep_limit = len(tokens) - 1  # the last prompt token is always evaluated: its logits give the first token
        if donor is not None:
            shared = min(shared, keep_limit)
            self.model.seq_rm(slot.id, 0, -1)
            self.model.seq_cp(donor.id, slot.id, 0, shared)
            slot.cached = tokens[:shared]
        else:
            keep = min(keep, keep_limit)
            self.model.seq_rm(slot.id, keep, -1)
            slot.cached = slot.cached[:keep]
        seq.n_eval = len(slot.cached)
        if reuse:
            self._find_leader(seq, keep_limit)
        seed = opts.seed if opts.seed >= 0 else random.randint(0, 2**31 - 1)
        try:
            seq.sampler = self.model.sampler(opts, seed)
        except Exception as exc:  # noqa: BLE001 - a grammar llama.cpp refuses: this sequence ends, once
            # It holds the slot already: without this it was decoded once more and ended a second time.
            self._finish(seq, "error", exc)

    def _find_leader(self, seq: Sequence, keep_limit: int) -> None:
        """Follow the prefilling sequence that will evaluate the longest part of seq's prompt not cached yet."""
        best, best_n = None, seq.n_eval
        for slot in self.slots:
            other = slot.seq
            if other is None or other is seq or other.leader is not None or not other.prefilling:
                continue
            n = min(common_prefix(other.tokens, seq.tokens), keep_limit)
            if n > best_n:
                best, best_n = other, n
        if best is not None:
            seq.leader, seq.follow = best, best_n

    def _catch_up(self, seq: Sequence) -> bool:
        """A follower copies its leader's cells once they hold the shared prefix, or goes on alone when the
        leader has left its slot; True when it may be prefilled this step."""
        leader = seq.leader
        source = leader.slot
        if source.seq is leader and leader.prefilling and leader.n_eval < seq.follow:
            return False
        have = min(common_prefix(source.cached, seq.tokens), seq.follow)
        slot = seq.slot
        if have > len(slot.cached):
            self.model.seq_rm(slot.id, 0, -1)
            self.model.seq_cp(source.id, slot.id, 0, have)
            slot.cached = seq.tokens[:have]
            seq.n_eval = have
        seq.leader = None
        return True

    # -- stepping ------------------------------------------------------------------------------
    def step(self) -> int:
        """One decode step over every busy slot; returns the sequences it decoded (0: nothing to do)."""
        for slot in self.slots:
            if slot.seq is not None and slot.seq.cancel.is_set():
                self._finish(slot.seq, "cancel")
        waiting = {id(s.seq) for s in self.slots if s.seq is not None and s.seq.leader is not None
                   and not self._catch_up(s.seq)}
        running = [s.seq for s in self.slots if s.seq is not None]
        if not running:
            return 0
        entries: list[tuple[int, list[int], int, bool]] = []
        members: list[tuple[Sequence, int]] = []  # (sequence, tokens it adds)
        for seq in running:
            if not seq.prefilling and seq.pending is not None:
                entries.append((seq.slot.id, [seq.pending], len(seq.slot.cached), True))
                members.append((seq, 1))
        prefill = [seq for seq in running if seq.prefilling and id(seq) not in waiting]
        budget = self.prefill_chunk
        if prefill:
            start = self._rr % len(prefill)
            self._rr += 1
            for seq in prefill[start:] + prefill[:start]:
                # Chunks start at fixed offsets of the prompt, whatever else is in the batch: a chunk that
                # does not fit this step waits for the next one rather than being cut.
                chunk = min(self.prefill_chunk, len(seq.tokens) - seq.n_eval)
                if chunk > budget:
                    continue
                budget -= chunk
                part = seq.tokens[seq.n_eval:seq.n_eval + chunk]
                last = seq.n_eval + chunk == len(seq.tokens)
                entries.append((seq.slot.id, part, seq.n_eval, last))
                members.append((seq, chunk))
        if not entries:
            return 0
        try:
            rows = self.model.decode(entries)
        except Exception as exc:  # noqa: BLE001 - the batch's sequences end with the error; others go on
            log.error("decode of %d sequences failed: %s", len(members), exc)
            for seq, _ in members:
                self._finish(seq, "error", exc)
            return 0
        self.steps += 1
        prompt_tokens = generated = 0
        for (seq, count), entry, row in zip(members, entries, rows, strict=True):
            seq.slot.cached.extend(entry[1])
            if seq.prefilling:
                seq.n_eval += count
                prompt_tokens += count
                if seq.prefilling:
                    continue
            elif seq.pending is not None:
                seq.pending = None
            generated += self._sample(seq, row)
        if self.on_step is not None:
            self.on_step(len(members), prompt_tokens, generated)
        return len(members)

    def _sample(self, seq: Sequence, row: int) -> int:
        """Sample the sequence's next token from its batch row; 1 when a token was generated."""
        stats = seq.stats
        try:
            token = seq.sampler.sample(row)
        except Exception as exc:  # noqa: BLE001 - a sampler error (a grammar it cannot follow) ends this one
            self._finish(seq, "error", exc)
            return 0
        now = self.clock()
        if stats.first_token_at is None:
            stats.first_token_at = now
            stats.prompt_eval_ns = int((now - seq.joined_at) * 1e9)
        if self.model.is_eog(token):
            self._finish(seq, "stop")
            return 0
        stats.eval_count += 1
        stats.output_tokens.append(token)
        text, hit = seq.stops.feed(seq.decoder.decode(self.model.piece(token)))
        if text:
            self._emit(seq, text)
        if hit:
            self._finish(seq, "stop")
        elif stats.eval_count >= seq.limit:
            self._finish(seq, "length")
        else:
            seq.pending = token
        return 1

    def _emit(self, seq: Sequence, text: str) -> None:
        try:
            seq.emit(text)
        except Exception:  # noqa: BLE001 - a reader that is gone must not stop the other slots
            log.exception("emit failed")
            seq.cancel.set()

    def _finish(self, seq: Sequence, reason: str, error: BaseException | None = None) -> None:
        """The sequence leaves its slot: cells kept as the slot's cache on success, given back otherwise."""
        slot = seq.slot
        stats = seq.stats
        stats.done_reason = reason
        if reason not in ("cancel", "error") and seq.stops is not None:
            # Text held back as a possible stop-string start turned out not to be one.
            tail = seq.stops.flush() + seq.decoder.decode(b"", final=True)
            if tail:
                self._emit(seq, tail)
        if stats.first_token_at is not None:
            stats.eval_ns = int((self.clock() - stats.first_token_at) * 1e9)
        if slot is not None:
            if reason in ("cancel", "error"):
                try:
                    self.model.seq_rm(slot.id, 0, -1)
                finally:
                    slot.cached = []
            slot.seq = None
        seq.leader = None
        if seq.sampler is not None:
            seq.sampler.free()
            seq.sampler = None
        try:
            seq.done(error)
        except Exception:  # noqa: BLE001
            log.exception("finishing a sequence failed")

    def cancel_all(self) -> None:
        for slot in self.slots:
            if slot.seq is not None:
                slot.seq.cancel.set()
