"""One generation at a time, first come first served, with a bounded queue (Ollama's defaults)."""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

from .metrics import BackendMetrics

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
_END = object()


class ServerBusy(Exception):
    """The queue is full; the request is answered 503."""


class Generation:
    """A job running on the engine thread; its text pieces are read with `async for`."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.cancel = threading.Event()
        self._loop = loop
        self._queue: asyncio.Queue = asyncio.Queue()
        self._future: asyncio.Future | None = None
        self._ready: asyncio.Future = loop.create_future()
        self.ready_set = False

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

    async def pieces(self) -> AsyncIterator[str]:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            yield item

    async def result(self):
        """The job's return value (or its exception), once it has finished."""
        assert self._future is not None
        return await asyncio.shield(self._future)

    def stop(self) -> None:
        """Ask the engine to stop at its next token; the slot frees when it does."""
        self.cancel.set()


class Scheduler:
    """Runs jobs on one engine thread; at most `max_queue` requests wait for it."""

    def __init__(self, max_queue: int, metrics: BackendMetrics):
        self.max_queue = max_queue
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._lock = asyncio.Lock()  # asyncio.Lock wakes waiters in FIFO order
        self._waiting = 0
        self._current: Generation | None = None
        self._closing = False

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def start(self, job: Callable[[Generation], object]) -> tuple[Generation, float]:
        """Wait for the engine, then run job(generation) on it; returns it and the seconds waited."""
        if self._closing:
            raise ServerBusy("server shutting down")
        if self._lock.locked() and self._waiting >= self.max_queue:
            self.metrics.rejected.inc()
            raise ServerBusy(BUSY_MESSAGE)
        arrived = time.perf_counter()
        self._waiting += 1
        self.metrics.queue_depth.set(self._waiting)
        try:
            # A client that goes away while queued cancels this await and leaves the queue.
            await self._lock.acquire()
        finally:
            self._waiting -= 1
            self.metrics.queue_depth.set(self._waiting)
        if self._closing:
            self._lock.release()
            raise ServerBusy("server shutting down")
        waited = time.perf_counter() - arrived
        loop = asyncio.get_running_loop()
        gen = Generation(loop)
        try:
            future = loop.run_in_executor(self._executor, job, gen)
        except BaseException:
            self._lock.release()
            raise
        gen._future = future
        self._current = gen
        self.metrics.in_flight.set(1)

        def finished(_: asyncio.Future) -> None:
            # The slot belongs to the engine thread, not to the handler: it frees when the
            # engine stops, even if the handler was cancelled long before.
            gen._queue.put_nowait(_END)
            if not gen._ready.done():
                # A job that never said it was ready: its result() carries any error.
                gen._ready.set_result(None)
            self._current = None
            self.metrics.in_flight.set(0)
            self._lock.release()

        future.add_done_callback(finished)
        return gen, waited

    def close_soon(self) -> None:
        """Refuse new work and stop the running generation at its next token."""
        self._closing = True
        if self._current is not None:
            self._current.stop()

    def close(self) -> None:
        """Stop and wait for the engine thread (blocking)."""
        self.close_soon()
        self._executor.shutdown(wait=True)
