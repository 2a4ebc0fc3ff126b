"""Loaded models: load on demand, unload when keep_alive runs out, evict the least recently used."""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .engine import Engine
from .model import rfc3339
from .registry import ModelEntry, timed_load

log = logging.getLogger(__name__)

# Ollama shows a model kept loaded forever as expiring after the longest Go duration (~292 years).
FOREVER = timedelta(microseconds=(2**63 - 1) // 1000)
EngineFactory = Callable[[ModelEntry], Engine]


@dataclass
class Loaded:
    """One model in memory."""

    entry: ModelEntry
    engine: Engine
    load_seconds: float
    loaded_at: float
    expires_at: float  # wall-clock seconds; math.inf: never
    running: int = 0


def fix_malloc_thresholds() -> None:
    """Keep glibc from raising its mmap threshold after big frees (to 32 MB by default): the engine's
    and the responses' large buffers then go back to the OS when freed, and RSS shows an unload."""
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD: fixed, which also stops the dynamic adjustment
        libc.mallopt(-1, 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def release_heap() -> None:
    """Hand freed heap pages back to the OS, so that RSS shows the unload (glibc keeps them otherwise)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


class LoadedModels:
    """The models in memory. Loads and unloads run on the engine thread, between generations;
    the event loop only reads snapshots and arms the expiry timer."""

    def __init__(self, factory: EngineFactory, max_loaded: int = 3, keep_alive: float = 300.0, num_ctx: int = 2048,
                 num_parallel: int = 1):
        self.factory = factory
        self.num_ctx = num_ctx
        self.num_parallel = max(1, num_parallel)  # slots of every chat model (BACKEND_NUM_PARALLEL)
        self.max_loaded = max(1, max_loaded)
        self.default_keep_alive = keep_alive
        self._models: OrderedDict[str, Loaded] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._run_job: Callable[[Callable[[], None]], object] | None = None

    def attach(self, loop: asyncio.AbstractEventLoop, run_job: Callable) -> None:
        """Give the manager the server's loop and a way to run work on the engine thread (for expiry)."""
        self._loop, self._run_job = loop, run_job

    def preload(self, entry: ModelEntry, engine: Engine, keep_alive: float = math.inf) -> None:
        """Count an engine that is already in memory as loaded (a server built around one engine)."""
        with self._lock:
            self._models[entry.tag] = Loaded(entry, engine, 0.0, time.time(), time.time() + keep_alive)

    # -- engine thread -------------------------------------------------------------------------
    def acquire(self, entry: ModelEntry) -> tuple[Engine, float]:
        """The engine for entry, loading it (and evicting the least recently used) when needed;
        returns it and the seconds its load took (0 when it was loaded)."""
        with self._lock:
            current = self._models.get(entry.tag)
            if current is not None and current.entry.path == entry.path:
                self._models.move_to_end(entry.tag)
                current.running += 1
                return current.engine, 0.0
        if current is not None:
            self.unload(entry.tag)  # the name now points at another file
        while len(self._models) >= self.max_loaded:
            with self._lock:
                idle = [tag for tag, m in self._models.items() if m.running == 0]
            if not idle:
                break
            log.info("unloading %s: BACKEND_MAX_LOADED_MODELS=%d reached", idle[0], self.max_loaded)
            self.unload(idle[0])
        engine, seconds = timed_load(entry, self.factory)
        with self._lock:
            self._models[entry.tag] = Loaded(entry, engine, seconds, time.time(), math.inf, running=1)
        return engine, seconds

    def release(self, tag: str, keep_alive: float) -> None:
        """A request is done with tag: restart its keep_alive clock, or unload it now (0)."""
        with self._lock:
            loaded = self._models.get(tag)
            if loaded is None:
                return
            loaded.running = max(0, loaded.running - 1)
            loaded.expires_at = time.time() + keep_alive if math.isfinite(keep_alive) else math.inf
            unload_now = keep_alive <= 0 and loaded.running == 0
        if unload_now:
            self.unload(tag)
        self._arm_soon()

    def unload(self, tag: str) -> bool:
        """Free a model's memory (engine thread only)."""
        with self._lock:
            loaded = self._models.pop(tag, None)
        if loaded is None:
            return False
        loaded.engine.close()
        del loaded
        release_heap()
        log.info("unloaded %s", tag)
        return True

    def expire(self) -> None:
        """Unload every idle model whose keep_alive has run out."""
        now = time.time()
        with self._lock:
            due = [tag for tag, m in self._models.items() if m.running == 0 and m.expires_at <= now]
        for tag in due:
            self.unload(tag)
        self._arm_soon()

    def unload_all(self) -> None:
        for tag in list(self._models):
            self.unload(tag)

    # -- event loop ----------------------------------------------------------------------------
    def _arm_soon(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._arm)

    def _arm(self) -> None:
        """Set one timer for the earliest expiry."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with self._lock:
            times = [m.expires_at for m in self._models.values() if m.running == 0 and math.isfinite(m.expires_at)]
        if times and self._loop is not None:
            delay = max(0.0, min(times) - time.time())
            self._timer = self._loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._run_job is not None:
            task = asyncio.ensure_future(self._run_job(self.expire))
            task.add_done_callback(self._retry_if_failed)

    def _retry_if_failed(self, task: asyncio.Future) -> None:
        if task.cancelled() or task.exception() is not None:
            # The queue was full or the server is closing: try again shortly rather than never.
            if self._loop is not None and not self._loop.is_closed():
                self._timer = self._loop.call_later(1.0, self._fire)

    def num_ctx_for(self, info) -> int:
        """The context a model is loaded with: BACKEND_NUM_CTX, capped at what it was trained for."""
        return min(self.num_ctx, info.context_length) if info.context_length else self.num_ctx

    def snapshot(self) -> list[Loaded]:
        """The loaded models, most recently used first."""
        with self._lock:
            return list(reversed(self._models.values()))

    def is_loaded(self, tag: str) -> bool:
        with self._lock:
            return tag in self._models

    @staticmethod
    def expires_text(loaded: Loaded) -> str:
        if math.isinf(loaded.expires_at):
            return rfc3339(datetime.fromtimestamp(loaded.loaded_at, UTC) + FOREVER)
        return rfc3339(datetime.fromtimestamp(loaded.expires_at, UTC))
