"""Sends the requests of one phase, closed loop (workers) or open loop (a schedule), counting each once."""
from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Iterator

import aiohttp

from . import client
from .arrivals import worker_starts
from .client import RequestResult
from .config import DEFAULT_MAX_TOKENS, TrafficConfig
from .mix import ModelPicker, PriorityPicker
from .outputcheck import OutputCheck, ToolCheck
from .prompts import Prompt, PromptOrder
from .stats import Recorder


class Engine:
    """One phase of a run: its requests go to every recorder and to the sink, exactly once each."""

    def __init__(self, session: aiohttp.ClientSession, endpoint: str, config: TrafficConfig, model: str,
                 order: PromptOrder, recorders: Iterable[Recorder], t0: float, ids: Iterator[int],
                 sink: Callable[[RequestResult], None] | None = None, phase: str = "measure",
                 level: int | None = None, picker: ModelPicker | None = None,
                 by_model: dict[str, Recorder] | None = None, priorities: PriorityPicker | None = None,
                 by_priority: dict[int, Recorder] | None = None) -> None:
        self.session, self.endpoint, self.config, self.model = session, endpoint, config, model
        self.order, self.recorders, self.t0, self.ids = order, tuple(recorders), t0, ids
        self.sink, self.phase, self.level = sink, phase, level
        # A model mix draws each request's model; by_model takes each result once more, under its model.
        self.picker, self.by_model = picker, by_model
        # Likewise each request's priority (--priority-mix, or the one --priority), and by_priority per class.
        self.priorities, self.by_priority = priorities, by_priority
        self.check = OutputCheck.load(config.response_format) if config.response_format else None
        self.tool_check = ToolCheck.load(config.tools) if config.tools else None
        self.embeddings = config.endpoint == client.EMBEDDINGS
        self.interrupted = False
        self._bodies: dict[str, bytes] = {}
        self._workers: list[asyncio.Task] = []
        self._in_flight: set[asyncio.Task] = set()
        self._claimed = 0
        self._max: int | None = None
        self._deadline: float | None = None

    def body(self, prompt: Prompt, model: str | None = None, priority: int | None = None) -> bytes:
        """The request body for a prompt, model and priority, built once per triple (it is the same every time)."""
        model = model or self.model
        priority = self.config.priority if priority is None else priority
        cached = self._bodies.get((model, prompt.id, priority))
        if cached is None:
            c = self.config
            doc: dict = {"model": model, "messages": list(prompt.messages),
                         "max_tokens": c.max_tokens or prompt.max_tokens or DEFAULT_MAX_TOKENS,
                         "stream": c.stream}
            if c.stream:
                doc["stream_options"] = {"include_usage": True}
            if c.temperature is not None:
                doc["temperature"] = c.temperature
            if priority is not None:  # 0 included: the proxy's queue serves it first (docs/queue.md)
                doc["priority"] = priority
            if self.check is not None:
                doc["response_format"] = self.check.response_format()
            if self.tool_check is not None:
                doc["tools"] = list(self.tool_check.tools)
            doc.update(c.extra_body)
            cached = self._bodies[(model, prompt.id, priority)] = client.dumps(doc)
        return cached

    def embeddings_body(self, index: int, model: str) -> bytes:
        """--batch texts from the bank (the last user turn of consecutive prompts) as one embeddings request."""
        batch = self.config.batch
        texts = [self.order[index * batch + j].messages[-1]["content"] for j in range(batch)]
        return client.dumps({"model": model, "input": texts[0] if batch == 1 else texts, **self.config.extra_body})

    async def _send(self, index: int, scheduled_s: float | None = None) -> None:
        # Nothing above the try may await: a task cancelled before its first step runs none of
        # this, so a request is either never sent and never counted, or counted once below.
        prompt = self.order[index * self.config.batch if self.embeddings else index]
        model = self.picker.next() if self.picker is not None else self.model
        priority = None
        if not self.embeddings:  # embeddings pass the proxy's queue without waiting, so they are sent none
            priority = self.priorities.next() if self.priorities is not None else self.config.priority
        result = RequestResult(id=next(self.ids), phase=self.phase, prompt_id=prompt.id,
                               category=prompt.category, scheduled_s=scheduled_s, concurrency=self.level,
                               model=model, kind=self.config.endpoint, priority=priority)
        if self.embeddings:
            result.inputs = self.config.batch
        if self.check is not None:
            result.text_parts = []
        if self.tool_check is not None:
            result.calls = []
        started = time.perf_counter() - self.t0
        for rec in self._recorders_of(result):
            rec.started(started)
        try:
            body = self.embeddings_body(index, model) if self.embeddings else self.body(prompt, model, priority)
            await client.execute(self.session, self.endpoint, body, self.config.stream and not self.embeddings,
                                 self.config.timeout, result, self.t0)
            if self.check is not None and result.detail == client.OK:
                # Judged here, before any recorder sees it: a request ends in exactly one class.
                problem = self.check.problem(result.text)
                if problem is not None:
                    result.detail, result.error = client.INVALID_OUTPUT, problem
            if self.tool_check is not None and result.detail == client.OK:
                problem = self.tool_check.problem(result.calls)
                if problem is not None:
                    result.detail, result.error = client.INVALID_OUTPUT, problem
        except asyncio.CancelledError:
            result.detail, result.error, result.latency_s = client.CANCELLED, "run interrupted", None
            self._finish(result)
            raise
        except Exception as exc:  # a bug in the client must still leave a record of the request
            result.detail, result.error = client.GENERATOR_ERROR, f"{type(exc).__name__}: {exc}"
        self._finish(result)

    def _recorders_of(self, result: RequestResult) -> tuple[Recorder, ...]:
        """The phase's recorders, and the request's model's and priority's where those are kept apart."""
        out = self.recorders
        for groups, key in ((self.by_model, result.model), (self.by_priority, result.priority)):
            if groups is None or key is None:
                continue
            if key not in groups:
                groups[key] = Recorder(self.config.slo_ttft, self.config.slo_latency, self.config.seed)
            out = (*out, groups[key])
        return out

    def _finish(self, result: RequestResult) -> None:
        for rec in self._recorders_of(result):
            rec.add(result)
        if self.sink is not None:
            self.sink(result)

    def _claim(self) -> int | None:
        """The next prompt index, or None once the phase should send no more."""
        if self.interrupted or (self._max is not None and self._claimed >= self._max):
            return None
        if self._deadline is not None and time.perf_counter() >= self._deadline:
            return None
        self._claimed += 1
        return self._claimed - 1

    def interrupt(self) -> None:
        """Stop sending and cancel what is in flight; each cancelled request is counted as cancelled."""
        self.interrupted = True
        for task in itertools.chain(self._workers, self._in_flight):
            task.cancel()

    async def closed_loop(self, concurrency: int, max_requests: int | None = None,
                          duration: float | None = None, delay: float = 0.0, ramp: float = 0.0) -> None:
        """`concurrency` workers, each sending its next request when the last one ends (plus `delay`)."""
        self._begin(max_requests, duration)
        begin = time.perf_counter()

        async def worker(start_at: float) -> None:
            if start_at:
                await asyncio.sleep(max(0.0, begin + start_at - time.perf_counter()))
            while (index := self._claim()) is not None:
                await self._send(index)
                if delay:
                    await asyncio.sleep(delay)

        self._workers = [asyncio.create_task(worker(s)) for s in worker_starts(concurrency, ramp)]
        await self._wait()

    async def open_loop(self, schedule: Iterator[float], max_requests: int | None = None,
                        duration: float | None = None, cap: int | None = None) -> None:
        """Send on the schedule (seconds from now); `cap` bounds requests in flight, delaying the excess."""
        self._begin(max_requests, duration)
        self._workers = [asyncio.create_task(self._dispatch(schedule, cap))]
        await self._wait()

    async def _dispatch(self, schedule: Iterator[float], cap: int | None) -> None:
        begin = time.perf_counter()
        gate = asyncio.Semaphore(cap) if cap else None
        for due in schedule:
            if self._deadline is not None and begin + due >= self._deadline:
                break
            wait = begin + due - time.perf_counter()
            # Always yield, so tasks start even when the schedule is behind.
            await asyncio.sleep(wait if wait > 0 else 0)
            if gate is not None:
                await gate.acquire()
            index = self._claim()
            if index is None:
                if gate is not None:
                    gate.release()
                break
            task = asyncio.create_task(self._send(index, scheduled_s=begin + due - self.t0))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            if gate is not None:
                task.add_done_callback(lambda _t: gate.release())
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    def _begin(self, max_requests: int | None, duration: float | None) -> None:
        self._max = max_requests
        self._deadline = time.perf_counter() + duration if duration else None
        self._claimed = 0

    async def _wait(self) -> None:
        outcomes = await asyncio.gather(*self._workers, return_exceptions=True)
        # An interrupt can leave cancelled requests finishing their bookkeeping; let them.
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)
        self._workers = []
        for outcome in outcomes:
            if isinstance(outcome, Exception):  # cancellations are BaseException and pass
                raise outcome
