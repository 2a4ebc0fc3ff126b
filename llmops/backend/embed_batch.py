"""Embedding requests for the same model that wait together run as one llama.cpp batch.

A request joins the model's open batch; the first one queues the batch in the scheduler (one queue place,
first come first served with the generations). When the engine thread starts it, the batch closes: later
requests open the next one. So while the engine embeds one batch, the requests that arrive meanwhile gather
for the next, and N single texts cost one decode instead of N (docs/backend.md has the figures). Ollama's runner, too, decodes the sequences of concurrent requests in one batch.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

MAX_TEXTS = 64  # texts in one batch; more open another, which takes its own queue place


@dataclass
class Item:
    texts: list[str]
    keep_alive: float
    arrived: float = field(default_factory=time.perf_counter)


@dataclass
class Outcome:
    vectors: list[list[float]]
    count: int
    load_seconds: float
    waited: float


class Batch:
    """The requests that one engine job embeds; `close` (engine thread) fixes its members."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.texts = 0
        self.closed = False
        self.task: asyncio.Task | None = None
        self.waiting = 0  # requests still awaiting it; none left before it starts: it leaves the queue
        self._lock = threading.Lock()

    def join(self, item: Item) -> int | None:
        """The item's place in the batch, or None when the batch is closed or full."""
        with self._lock:
            if self.closed or (self.items and self.texts + len(item.texts) > MAX_TEXTS):
                return None
            self.items.append(item)
            self.texts += len(item.texts)
            return len(self.items) - 1

    def close(self) -> list[Item]:
        with self._lock:
            self.closed = True
            return list(self.items)


# run(items, started) -> one Outcome per item; it runs on the engine thread and may raise.
Runner = Callable[[list[Item], float], list[Outcome]]


class EmbedBatcher:
    """Open batches by model (name and file); everything here but the runner runs on the event loop."""

    def __init__(self, schedule: Callable[[Callable[[], object]], Awaitable[object]]):
        self._schedule = schedule  # runs a function on the engine thread in turn with the generations
        self._open: dict[tuple[str, str], Batch] = {}

    async def embed(self, key: tuple[str, str], item: Item, run: Runner) -> Outcome:
        """`key` is the model's name and its file: a name re-pointed meanwhile gathers a batch of its own."""
        batch = self._open.get(key)
        # A batch whose task already ended (refused by a full queue) is forgotten one loop step later: not joined.
        usable = batch is not None and not (batch.task is not None and batch.task.done())
        index = batch.join(item) if usable else None  # type: ignore[union-attr]
        if index is None:
            batch = self._open[key] = Batch()
            index = batch.join(item)
            batch.task = asyncio.ensure_future(self._schedule(lambda b=batch: self._start(b, run)))
            batch.task.add_done_callback(lambda _t, b=batch: self._forget(key, b))
        assert batch.task is not None and index is not None
        batch.waiting += 1
        try:
            outcomes = await asyncio.shield(batch.task)
        except asyncio.CancelledError:
            # The client went away. The last one to leave a batch that has not started takes it out of the queue.
            batch.waiting -= 1
            if batch.waiting == 0 and not batch.closed:
                batch.task.cancel()
                self._forget(key, batch)
            raise
        batch.waiting -= 1
        return outcomes[index]  # type: ignore[index]

    def gathering(self, tag: str) -> int:
        """Requests in the model's batches that have not started yet."""
        return sum(len(b.items) for key, b in self._open.items() if key[0] == tag and not b.closed)

    def _forget(self, key: tuple[str, str], batch: Batch) -> None:
        if self._open.get(key) is batch:
            del self._open[key]

    @staticmethod
    def _start(batch: Batch, run: Runner) -> list[Outcome]:
        started = time.perf_counter()
        return run(batch.close(), started)


def split(vectors: list[list[float]], counts: list[int], items: list[Item], load_seconds: float,
          started: float) -> list[Outcome]:
    """One batch's vectors and per-request token counts, cut back into its requests."""
    outcomes, at = [], 0
    for item, count in zip(items, counts, strict=True):
        n = len(item.texts)
        outcomes.append(Outcome(vectors[at:at + n], count, load_seconds, started - item.arrived))
        at += n
    return outcomes
