"""The LiteLLM proxy's process: LiteLLM's own command line, with Python 3.11's cyclic GC run from a safe place.

CPython 3.10 and 3.11 can crash with SIGSEGV in `ContextVar.set` when a garbage collection starts while
`ContextVar.set` is allocating the context's new HAMT nodes, and a finalizer that collection runs sets or
resets a variable of the same context: the inner set frees the HAMT the outer one is still walking
(python/cpython#148891; the 3.12 GC no longer triggers it, and the fix, python/cpython#148928, is not in 3.11).
LiteLLM 1.108.7's proxy sets and resets context variables on every request (`litellm/_internal_context.py`
`service_target`, from auth), and coroutines the GC closes reset theirs from whatever context is current: the
proxy died this way three times in test runs (2026-12-01), with `PYTHONFAULTHANDLER` showing the request in
`ContextVar.set`. `bench/gc_crash.py` reproduces the crash in a few lines.

So on Python < 3.12 automatic collection is off, and a daemon thread collects instead, on a schedule like
CPython's own: the young generation every tick, the middle one every 10th, everything every 100th. A
collection started by that thread can never run inside another thread's `ContextVar.set`, because that C
function holds the GIL from start to end and runs no Python code unless a collection starts within it.
`gc.collect()` from the thread runs the same finalizers automatic collection ran from whichever thread
happened to allocate (LiteLLM's thread pools included), so no new kind of code runs off the event loop.

`install()` runs when this module is imported, which also happens in each worker that uvicorn spawns for
LITELLM_WORKERS > 1 (multiprocessing's spawn imports the parent's main module as `__mp_main__`).
"""
from __future__ import annotations

import gc
import os
import sys
import threading

# Seconds between two collections; LLMOPS_PROXY_GC_INTERVAL overrides it (bench/proxy_overhead.py measures it).
DEFAULT_INTERVAL = 0.1
FIXED_IN = (3, 12)


def schedule(tick: int) -> int:
    """The generation to collect at this tick (1, 2, ...): 2 every 100th, 1 every 10th, 0 otherwise."""
    return 2 if tick % 100 == 0 else 1 if tick % 10 == 0 else 0


def collect_forever(interval: float, stop: threading.Event) -> None:
    tick = 0
    while not stop.wait(interval):
        tick += 1
        gc.collect(schedule(tick))


def install(interval: float | None = None, version: tuple[int, int] = sys.version_info[:2]) -> threading.Event | None:
    """Move cyclic GC to a collector thread on an affected Python; returns the thread's stop event, or None."""
    if version >= FIXED_IN or os.environ.get("LLMOPS_PROXY_GC") == "auto":
        return None
    if interval is None:
        interval = float(os.environ.get("LLMOPS_PROXY_GC_INTERVAL", DEFAULT_INTERVAL))
    stop = threading.Event()
    gc.disable()
    threading.Thread(target=collect_forever, args=(interval, stop), name="llmops-gc", daemon=True).start()
    return stop


_COLLECTOR = install()


def main() -> int:
    """`python -m llmops.render.proxy_main ARGS`: LiteLLM's `litellm ARGS`, in this process."""
    from litellm.proxy.proxy_cli import run_server

    sys.argv[0] = "litellm"
    return run_server()


if __name__ == "__main__":
    sys.exit(main())
