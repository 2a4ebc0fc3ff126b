"""The engine thread: parallel slots per model, continuous batching, and a bounded queue (Ollama's defaults).

Every loaded chat model has N slots (BACKEND_NUM_PARALLEL, Ollama's OLLAMA_NUM_PARALLEL). A request
takes a free slot of its model at once, or waits for one in arrival order; past `max_queue` waiting
requests it gets a 503. One engine thread does all llama.cpp work: between decode steps it runs the
jobs (embedding batches, loads, unloads) and starts the sequences that got a slot, then it decodes one
step of every busy model in turn (`slots.SlotBatcher`), so one model's load does not stall another's.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

from .metrics import BackendMetrics
from .slots import Sequence, SlotBatcher

log = logging.getLogger(__name__)

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
_END = object()


class ServerBusy(Exception):
    """The queue is full; the request is answered 503."""


class Generation:
    """A job or a sequence of the engine thread; its text pieces are read with `async for`."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.cancel = threading.Event()
        self._loop = loop
        self._queue: asyncio.Queue = asyncio.Queue()
        self._future: asyncio.Future = loop.create_future()
        self._ready: asyncio.Future = loop.create_future()
        self.ready_set = False
        self.started = False  # the engine thread has taken it
        self.withdrawn = False  # its caller left before the engine thread took it
        self._on_end: Callable[[], None] | None = None

    def set_ready(self, error: BaseException | None = None) -> None:
        """Called on the engine thread once the model is loaded and the prompt is ready (or failed)."""
        self.ready_set = True

        def settle() -> None:
            if not self._ready.done():
                if error is None:
                    self._ready.set_result(None)
                else:
                    self._ready.set_exception(error)

        self._loop.call_soon_threadsafe(settle)

    async def wait_ready(self) -> None:
        """Wait until the job has its model and prompt; raises what it failed with."""
        await asyncio.shield(self._ready)

    def emit(self, piece: str) -> None:
        """Called on the engine thread for every piece of text."""
        self._loop.call_soon_threadsafe(self._queue.put_nowait, piece)

    def finish(self, result: object = None, error: BaseException | None = None) -> None:
        """Called once on the engine thread when the work has ended; gives its slot back on the loop."""
        def settle() -> None:
            self._queue.put_nowait(_END)
            if not self._ready.done():
                # A job that never said it was ready: its result() carries any error.
                self._ready.set_result(None)
            if not self._future.done():
                if error is None:
                    self._future.set_result(result)
                else:
                    self._future.set_exception(error)
            if self._on_end is not None:
                on_end, self._on_end = self._on_end, None
                on_end()

        try:
            self._loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    async def pieces(self) -> AsyncIterator[str]:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            yield item

    async def result(self):
        """The job's return value (or its exception), once it has finished."""
        return await asyncio.shield(self._future)

    def stop(self) -> None:
        """Ask the engine to stop at its next step; the slot frees when it does."""
        self.cancel.set()


class SlotPool:
    """A model's N slots on the event loop: taken at once when free, else waited for in arrival order."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self.used = 0
        self._waiters: deque[list] = deque()  # [count, future]

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_take(self, n: int = 1) -> bool:
        if not self._waiters and self.used + n <= self.size:
            self.used += n
            return True
        return False

    async def take(self, n: int = 1) -> None:
        """Wait for n slots (n = size: the whole model, for an unload); a cancelled waiter leaves the line."""
        n = min(n, self.size)
        if self.try_take(n):
            return
        entry = [n, asyncio.get_running_loop().create_future()]
        self._waiters.append(entry)
        try:
            await entry[1]
        except asyncio.CancelledError:
            if entry[1].done() and not entry[1].cancelled():
                self.release(n)  # granted in the same loop step as the cancel
            elif entry in self._waiters:
                self._waiters.remove(entry)
                self._wake()
            raise

    def release(self, n: int = 1) -> None:
        self.used = max(0, self.used - min(n, self.size))
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.size:
            n, future = self._waiters.popleft()
            if future.done():
                continue
            self.used += n
            future.set_result(None)


# A sequence's setup runs on the engine thread: it loads the model and tokenizes the prompt, and returns
# the engine and the Sequence to decode, or None when it ended before (its Generation already finished).
Setup = Callable[[Generation], "tuple[object, Sequence] | None"]


class Scheduler:
    """The slots of every model, the queue in front of them, and the one engine thread behind them."""

    def __init__(self, max_queue: int, metrics: BackendMetrics, slots_for: Callable[[str], int] = lambda tag: 1,
                 prefill_chunk: int = 128):
        self.max_queue = max_queue
        self.metrics = metrics
        self.slots_for = slots_for
        self.prefill_chunk = prefill_chunk
        self._pools: dict[str, SlotPool] = {}
        self._live: set[Generation] = set()
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._inbox: deque[tuple] = deque()
        self._waiting = 0  # requests waiting for a slot, and jobs waiting for the engine thread
        self._sequences = 0  # sequences given to the engine thread and not yet ended
        self._jobs_running = 0
        self._batchers: dict[int, tuple[object, SlotBatcher]] = {}
        self._thread: threading.Thread | None = None
        self._stop = False
        self._closing = False

    # -- the event loop side -------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def busy(self) -> bool:
        return self._sequences > 0 or self._jobs_running > 0 or bool(self._inbox)

    def pool(self, tag: str) -> SlotPool:
        pool = self._pools.get(tag)
        if pool is None:
            pool = self._pools[tag] = SlotPool(self.slots_for(tag))
        return pool

    def _count_waiting(self, delta: int) -> None:
        with self._lock:
            self._waiting += delta
            self.metrics.queue_depth.set(self._waiting)

    def _refuse_if_full(self) -> None:
        if self._closing:
            raise ServerBusy("server shutting down")
        if self._waiting >= self.max_queue:
            self.metrics.rejected.inc()
            raise ServerBusy(BUSY_MESSAGE)

    async def start_sequence(self, tag: str, setup: Setup) -> tuple[Generation, float]:
        """Take a slot of the model (waiting in line for one), then start setup on the engine thread;
        returns the Generation and the seconds waited for the slot."""
        if self._closing:
            raise ServerBusy("server shutting down")
        pool = self.pool(tag)
        arrived = time.perf_counter()
        if not pool.try_take():
            self._refuse_if_full()
            self._count_waiting(1)
            try:
                # A client that goes away while queued cancels this await and leaves the line.
                await pool.take()
            finally:
                self._count_waiting(-1)
            if self._closing:
                pool.release()
                raise ServerBusy("server shutting down")
        waited = time.perf_counter() - arrived
        gen = Generation(asyncio.get_running_loop())
        self._live.add(gen)

        def ended() -> None:
            self._live.discard(gen)
            pool.release()

        gen._on_end = ended
        with self._cv:
            self._sequences += 1
            self.metrics.in_flight.set(self._sequences)
            self._inbox.append(("sequence", gen, setup))
            self._cv.notify()
        self._ensure_thread()
        return gen, waited

    async def run(self, fn: Callable[[], object], *, whole_model: str | None = None) -> object:
        """Run fn on the engine thread between decode steps; returns its result. With whole_model, first
        take all of that model's slots (an unload waits for the model's running sequences)."""
        if whole_model is not None:
            pool = self.pool(whole_model)
            await pool.take(pool.size)
            try:
                return await self.run(fn)
            finally:
                pool.release(pool.size)
        if self.busy:
            self._refuse_if_full()
        elif self._closing:
            raise ServerBusy("server shutting down")
        gen = Generation(asyncio.get_running_loop())
        self._count_waiting(1)
        with self._cv:
            self._inbox.append(("job", gen, fn))
            self._cv.notify()
        self._ensure_thread()
        try:
            return await gen.result()
        except asyncio.CancelledError:
            with self._lock:
                if not gen.started:
                    gen.withdrawn = True  # left the queue: the engine thread skips it
                    self._waiting -= 1
                    self.metrics.queue_depth.set(self._waiting)
            raise

    def close_soon(self) -> None:
        """Refuse new work and stop the running sequences at their next step."""
        self._closing = True
        for gen in list(self._live):
            gen.stop()
        with self._cv:
            self._cv.notify()

    def close(self) -> None:
        """Stop and wait for the engine thread (blocking)."""
        self.close_soon()
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join()

    # -- the engine thread ---------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)
            self._thread.start()

    def _active(self) -> bool:
        return any(batcher.busy for _, batcher in self._batchers.values())

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._inbox and not self._active() and not self._stop:
                    self._cv.wait()
                if self._stop and not self._inbox and not self._active():
                    return
                items = list(self._inbox)
                self._inbox.clear()
            for item in items:
                try:
                    self._handle(item)
                except Exception:  # noqa: BLE001 - the engine thread must outlive any one request
                    log.exception("engine work failed")
            for engine, batcher in list(self._batchers.values()):
                if batcher.busy:
                    if self._closing:
                        batcher.cancel_all()
                    batcher.step()
                self._observe(engine, batcher)
            self._prune()

    def _handle(self, item: tuple) -> None:
        kind, gen, work = item
        if kind == "job":
            with self._lock:
                if gen.withdrawn:
                    return
                gen.started = True
                self._waiting -= 1
                self.metrics.queue_depth.set(self._waiting)
                self._jobs_running += 1
            try:
                result = work()
            except Exception as exc:  # noqa: BLE001 - the caller gets it from result()
                gen.finish(None, exc)
            else:
                gen.finish(result)
            finally:
                with self._lock:
                    self._jobs_running -= 1
            return
        gen.started = True
        original_end = gen._on_end

        def sequence_ended() -> None:
            with self._lock:
                self._sequences -= 1
                self.metrics.in_flight.set(self._sequences)
            if original_end is not None:
                original_end()

        gen._on_end = sequence_ended
        try:
            started = work(gen)
        except Exception as exc:  # noqa: BLE001
            gen.finish(None, exc)
            return
        if started is None:
            return  # ended before decoding (a load error, an empty prompt): setup finished it
        engine, seq = started
        batcher = self._batcher(engine)
        try:
            batcher.join(seq)
        except Exception as exc:  # noqa: BLE001
            seq.done(exc)

    def _batcher(self, engine: object) -> SlotBatcher:
        key = id(engine)
        found = self._batchers.get(key)
        if found is None or found[0] is not engine:
            batcher = SlotBatcher(engine, self.prefill_chunk)  # type: ignore[arg-type]
            tag = engine.info.tag  # type: ignore[attr-defined]
            batcher.on_step = lambda n, prompt, out, tag=tag: self.metrics.observe_step(tag, n, prompt, out)
            found = self._batchers[key] = (engine, batcher)
        return found[1]

    def _observe(self, engine: object, batcher: SlotBatcher) -> None:
        tag = engine.info.tag  # type: ignore[attr-defined]
        self.metrics.observe_slots(tag, len(batcher.slots), batcher.busy, batcher.cells_used(),
                                   len(batcher.slots) * batcher.model.n_ctx)

    def _prune(self) -> None:
        """Forget the slots of engines that were unloaded."""
        for key, (engine, batcher) in list(self._batchers.items()):
            if not batcher.busy and getattr(engine, "closed", False):
                del self._batchers[key]
                self.metrics.forget_model(engine.info.tag)  # type: ignore[attr-defined]
