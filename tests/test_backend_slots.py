"""The slot scheduler (llmops.backend.slots) over FakeEngine, a stand-in for llama.cpp's batched decode:
joining at a step boundary, chunked prefill, cells given back, per-slot samplers, fairness, the prompt cache."""
from __future__ import annotations

import threading

import pytest

from llmops.backend.engine import DecodeError, Stats
from llmops.backend.options import GenOptions
from llmops.backend.slots import Sequence, SlotBatcher
from tests.support.fakes.backend import FakeEngine, expected_text


class Clock:
    """A fake clock: every call is one tick later."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


class Run:
    """One sequence's prompt, options, text and end, as the scheduler would pass them."""

    def __init__(self, tokens: list[int], **opts):
        self.text: list[str] = []
        self.ended: list[BaseException | None] = []
        self.stats = Stats()
        self.cancel = threading.Event()
        self.seq = Sequence(list(tokens), GenOptions(**opts), self.stats, self.cancel, self.text.append, self.ended.append)

    @property
    def output(self) -> str:
        return "".join(self.text)


def batcher(tmp_path, n_slots=4, chunk=8, n_ctx=4096) -> tuple[FakeEngine, SlotBatcher]:
    engine = FakeEngine(tmp_path / "fake.gguf", n_slots=n_slots, n_ctx=n_ctx)
    return engine, SlotBatcher(engine, prefill_chunk=chunk, clock=Clock())


def drain(slots: SlotBatcher, limit: int = 1000) -> None:
    for _ in range(limit):
        if not slots.busy:
            return
        slots.step()
    raise AssertionError("sequences still running after 1000 steps")


def test_a_sequence_that_joins_is_decoded_with_the_running_one_from_the_next_step(tmp_path):
    engine, slots = batcher(tmp_path)
    a = Run([1, 2, 3], num_predict=5)
    slots.join(a.seq)
    slots.step()  # a's prompt, and its first token
    slots.step()
    b = Run([4, 5], num_predict=2)
    slots.join(b.seq)
    slots.step()
    # One batch: a's next token beside b's whole prompt.
    assert engine.batches[-1] == [(0, 1, 4, True), (1, 2, 0, True)]
    drain(slots)
    assert a.output == expected_text(5) and b.output == expected_text(2)
    assert a.ended == [None] and b.ended == [None]
    assert a.stats.done_reason == b.stats.done_reason == "length"


def test_a_long_prompt_is_prefilled_in_chunks_while_the_running_stream_goes_on(tmp_path):
    engine, slots = batcher(tmp_path, chunk=8)
    running = Run([1], num_predict=50)
    slots.join(running.seq)
    slots.step()
    long = Run(list(range(20)), num_predict=1)
    slots.join(long.seq)
    for _ in range(3):
        slots.step()
    prompt_parts = [[e for e in batch if e[0] == 1] for batch in engine.batches[-3:]]
    assert prompt_parts == [[(1, 8, 0, False)], [(1, 8, 8, False)], [(1, 4, 16, True)]]
    # The running stream got one token in each of those steps.
    assert [[e for e in batch if e[0] == 0] for batch in engine.batches[-3:]] == [[(0, 1, p, True)] for p in (1, 2, 3)]
    assert long.output == "w0" and len(running.stats.output_tokens) == 4


def test_prompt_tokens_per_step_stay_within_the_chunk_and_chunks_are_not_cut(tmp_path):
    engine, slots = batcher(tmp_path, chunk=8)
    runs = [Run(list(range(i * 100, i * 100 + 6)), num_predict=1) for i in range(3)]  # no prefix shared
    for run in runs:
        slots.join(run.seq)
    slots.step()
    slots.step()
    # 6 + 6 > 8: the second prompt waits for the next step rather than being cut at 2 tokens.
    assert [sorted(e[1] for e in batch) for batch in engine.batches] == [[6], [6]]
    drain(slots)
    assert all(run.output == "w0" for run in runs)
    assert all(size <= 8 for batch in engine.batches for size in [sum(e[1] for e in batch if not e[1] == 1)])


def test_a_sequence_cancelled_during_prefill_gives_back_its_slot_and_cells(tmp_path):
    engine, slots = batcher(tmp_path, n_slots=2, chunk=4)
    other = Run([9, 9], num_predict=20)
    slots.join(other.seq)
    victim = Run(list(range(12)), num_predict=5)
    slots.join(victim.seq)
    slots.step()  # other's prompt (2 tokens): the victim's 4-token chunk does not fit beside it
    slots.step()
    assert engine.cells[1] == set(range(4))
    victim.cancel.set()
    slots.step()
    assert victim.ended == [None] and victim.stats.done_reason == "cancel"
    assert engine.cells[1] == set() and slots.busy == 1 and victim.seq.sampler is None
    assert engine.samplers[1].freed
    drain(slots)
    assert other.output == expected_text(20)  # unharmed


def test_a_failed_decode_ends_its_sequences_with_the_error_and_frees_their_cells(tmp_path):
    engine, slots = batcher(tmp_path, n_slots=2)
    a, b = Run([1, 2], num_predict=10), Run([3], num_predict=10)
    slots.join(a.seq)
    slots.join(b.seq)
    slots.step()
    engine.fail_next_decode = DecodeError("llama_decode returned 1")
    slots.step()
    assert [type(e) for e in a.ended + b.ended] == [DecodeError, DecodeError]
    assert a.stats.done_reason == "error" and slots.busy == 0
    assert engine.cells[0] == engine.cells[1] == set()
    retry = Run([1, 2], num_predict=2)
    slots.join(retry.seq)
    drain(slots)
    assert retry.output == expected_text(2)


def test_a_finished_sequence_keeps_its_cells_as_the_slots_prompt_cache(tmp_path):
    engine, slots = batcher(tmp_path, n_slots=2)
    first = Run([5, 6, 7, 8], num_predict=3)
    slots.join(first.seq)
    drain(slots)
    # Prompt and the answer tokens that were evaluated (the last sampled one never was).
    assert engine.cells[0] == set(range(6)) and slots.slots[0].cached == [5, 6, 7, 8, 0, 1]
    assert slots.cells_used() == 6


def test_each_slot_has_its_own_sampler_reading_only_its_own_rows(tmp_path):
    engine, slots = batcher(tmp_path, chunk=16)
    runs = [Run([i + 1] * (i + 2), num_predict=4, temperature=0.1 * i, seed=100 + i, stop=[f"w{3 - i}"])
            for i in range(3)]
    for run in runs:
        slots.join(run.seq)
    drain(slots)
    for i, (run, sampler) in enumerate(zip(runs, engine.samplers, strict=True)):
        assert sampler.opts is run.seq.opts and sampler.seed == 100 + i and sampler.freed
        assert {seq for seq, _ in sampler.seen} == {run.seq.slot.id}
        prompt = i + 2
        assert [pos for _, pos in sampler.seen] == list(range(prompt - 1, prompt - 1 + len(sampler.seen)))
    # Each stop string cut its own stream only (the space before it is text, as Ollama sends it).
    assert [run.output for run in runs] == ["w0 w1 w2 ", "w0 w1 ", "w0 "]
    assert [run.stats.done_reason for run in runs] == ["stop", "stop", "stop"]


def test_every_generating_slot_gets_one_token_per_step_and_prefills_take_turns(tmp_path):
    engine, slots = batcher(tmp_path, n_slots=4, chunk=4)
    decoding = [Run([1], num_predict=100) for _ in range(2)]
    for run in decoding:
        slots.join(run.seq)
    slots.step()
    prefilling = [Run(list(range(i * 100, i * 100 + 12)), num_predict=1) for i in range(2)]  # no prefix shared
    for run in prefilling:
        slots.join(run.seq)
    for _ in range(6):
        slots.step()
    counts = [len(run.stats.output_tokens) for run in decoding]
    assert counts == [7, 7]
    # Only one 4-token chunk fits a step: the two prompts alternate, chunk by chunk.
    owners = [[e[0] for e in batch if e[1] > 1] for batch in engine.batches[1:7]]
    assert sorted(owners[:2]) == [[2], [3]] and all(owners[i] == owners[i % 2] for i in range(6))
    assert all(run.output == "w0" for run in prefilling)


def test_a_new_request_takes_the_free_slot_whose_cache_shares_the_longest_prefix(tmp_path):
    engine, slots = batcher(tmp_path, n_slots=3, chunk=64)
    system_a, system_b = [7] * 10, [8] * 10
    for tokens in (system_a + [1], system_b + [2]):
        run = Run(tokens, num_predict=1)
        slots.join(run.seq)
        drain(slots)
    assert [len(s.cached) for s in slots.slots] == [11, 11, 0]
    follow = Run(system_b + [3, 4], num_predict=1)
    slots.join(follow.seq)
    assert follow.seq.slot.id == 1 and follow.seq.n_eval == 10
    slots.step()
    assert engine.batches[-1] == [(1, 2, 10, True)]  # only the two new tokens are evaluated


def test_a_prefix_cached_in_another_slot_is_copied_instead_of_evaluated(tmp_path):
    engine, slots = batcher(tmp_path, n_slots=2, chunk=64)
    system = list(range(30))
    busy = Run(system + [100], num_predict=50)
    slots.join(busy.seq)
    slots.step()  # the busy slot holds the system prompt's cells now
    newcomer = Run(system + [200, 201], num_predict=1)
    slots.join(newcomer.seq)
    assert newcomer.seq.slot.id == 1 and engine.cells[1] == set(range(30))
    slots.step()
    assert (1, 2, 30, True) in engine.batches[-1]
    drain(slots)
    assert newcomer.output == "w0" and busy.output == expected_text(50)


def test_a_seeded_request_evaluates_its_whole_prompt(tmp_path):
    engine, slots = batcher(tmp_path, n_slots=1, chunk=64)
    for _ in range(2):
        run = Run([1, 2, 3, 4], num_predict=1, seed=42)
        slots.join(run.seq)
        drain(slots)
        assert engine.batches[-1] == [(0, 4, 0, True)]


def test_a_prompt_already_cached_whole_re_evaluates_its_last_token(tmp_path):
    engine, slots = batcher(tmp_path, n_slots=1)
    for _ in range(2):
        run = Run([1, 2, 3], num_predict=1)
        slots.join(run.seq)
        drain(slots)
    assert engine.batches[-1] == [(0, 1, 2, True)] and run.output == "w0"


def test_num_ctx_is_capped_at_a_slots_share_and_a_long_prompt_loses_its_start(tmp_path):
    engine, slots = batcher(tmp_path, n_slots=2, n_ctx=64, chunk=64)
    run = Run(list(range(100)), num_ctx=4096, num_predict=8)
    slots.join(run.seq)
    # The window is the slot's 64 positions; 8 are kept for the answer, the oldest prompt tokens go.
    assert run.seq.tokens == list(range(44, 100)) and run.stats.prompt_eval_count == 56
    drain(slots)
    assert run.output == expected_text(8) and max(engine.cells[0]) < 64


def test_join_refuses_when_every_slot_is_busy(tmp_path):
    _engine, slots = batcher(tmp_path, n_slots=1)
    slots.join(Run([1], num_predict=5).seq)
    with pytest.raises(ValueError, match="no free slot"):
        slots.join(Run([2], num_predict=5).seq)


def test_a_sampler_error_ends_only_its_sequence_and_gives_back_its_slot_and_cells(tmp_path):
    engine, slots = batcher(tmp_path, n_slots=2)
    a, b = Run([1, 2], num_predict=6), Run([3, 4], num_predict=6)
    slots.join(a.seq)
    slots.join(b.seq)
    slots.step()
    failing = a.seq.sampler

    def no_token(row: int) -> int:
        raise ValueError("the grammar allows no token here")

    failing.sample = no_token
    slots.step()
    assert [str(e) for e in a.ended] == ["the grammar allows no token here"] and a.stats.done_reason == "error"
    assert failing.freed and engine.cells[0] == set() and slots.slots[0].cached == [] and slots.busy == 1
    drain(slots)
    assert b.ended == [None] and b.output == expected_text(6)  # unharmed


def test_a_sampler_that_cannot_be_made_ends_its_sequence_once_and_frees_its_slot(tmp_path):
    engine, slots = batcher(tmp_path, n_slots=1)
    made = engine.sampler

    def refused(opts, seed):
        raise ValueError("llama.cpp could not parse the grammar")

    engine.sampler = refused
    failed = Run([1, 2, 3], num_predict=5)
    slots.join(failed.seq)  # no exception: the sequence ends with the error
    assert [str(e) for e in failed.ended] == ["llama.cpp could not parse the grammar"]
    assert failed.stats.done_reason == "error" and slots.busy == 0 and slots.slots[0].cached == []
    slots.step()
    assert len(failed.ended) == 1 and engine.batches == [], "not decoded, not ended twice"
    engine.sampler = made
    after = Run([4, 5], num_predict=3)
    slots.join(after.seq)
    drain(slots)
    assert after.ended == [None] and after.output == expected_text(3)


def test_a_reader_that_is_gone_cancels_its_sequence_and_its_cells_are_given_back(tmp_path):
    engine, slots = batcher(tmp_path, n_slots=2)
    gone, other = Run([1, 2], num_predict=50), Run([3, 4], num_predict=5)

    def closed(piece: str) -> None:
        raise ConnectionResetError("the client went away")

    gone.seq.emit = closed
    slots.join(gone.seq)
    slots.join(other.seq)
    drain(slots)
    assert gone.ended == [None] and gone.stats.done_reason == "cancel" and gone.stats.eval_count < 50
    assert engine.samplers[0].freed and engine.cells[0] == set() and slots.slots[0].cached == []
    assert other.output == expected_text(5) and slots.busy == 0


def test_requests_arriving_together_with_one_prefix_evaluate_it_once(tmp_path):
    engine, slots = batcher(tmp_path, n_slots=4, chunk=8)
    system = list(range(30))
    runs = [Run(system + [100 + i, 200 + i], num_predict=3) for i in range(4)]
    for run in runs:
        slots.join(run.seq)  # none is cached yet: the first evaluates the prefix, the others wait for it
    drain(slots)
    prompt_entries = [(seq, n, pos) for batch in engine.batches for seq, n, pos, _ in batch if n > 1 or pos < 32]
    assert sum(n for seq, n, _ in prompt_entries if seq != 0) == 3 * 2  # the others only their own two tokens
    assert [(n, pos) for seq, n, pos in prompt_entries if seq == 1] == [(2, 30)]
    assert all(run.output == expected_text(3) for run in runs) and all(run.ended == [None] for run in runs)
    assert all(engine.cells[i] == set(range(34)) for i in range(4))  # prompt and the 2 tokens evaluated


def test_a_follower_whose_leader_is_cancelled_during_prefill_evaluates_its_prompt_itself(tmp_path):
    engine, slots = batcher(tmp_path, n_slots=2, chunk=8)
    system = list(range(30))
    leader, follower = Run(system + [1], num_predict=2), Run(system + [2], num_predict=2)
    slots.join(leader.seq)
    slots.join(follower.seq)
    slots.step()
    slots.step()
    assert [entry[0] for batch in engine.batches for entry in batch] == [0, 0]  # the follower waits, unevaluated
    leader.cancel.set()
    drain(slots)
    assert leader.ended == [None] and leader.seq.stats.done_reason == "cancel" and engine.cells[0] == set()
    assert follower.output == expected_text(2) and engine.cells[1] == set(range(32))
    assert [entry[1:3] for batch in engine.batches for entry in batch if entry[0] == 1][0] == (8, 0)
