"""The LiteLLM proxy's launch: its argv and environment, and its process (LiteLLM's own command line, with
Python 3.11's cyclic GC run from a safe place).

CPython 3.10 and 3.11 can crash with SIGSEGV in `ContextVar.set` when a garbage collection starts while
`ContextVar.set` is allocating the context's new HAMT nodes, and a finalizer that collection runs sets or
resets a variable of the same context: the inner set frees the HAMT the outer one is still walking
(python/cpython#148891; the 3.12 GC no longer triggers it, and the fix, python/cpython#148928, is not in 3.11).
LiteLLM 1.108.7's proxy sets and resets context variables on every request (`litellm/_internal_context.py`
`service_target`, from auth), and coroutines the GC closes reset theirs from whatever context is current.
`tests/support/gc_reentry.py` reproduces the CPython crash in a few lines. The proxy's own crashes, what a full
collection costs and what the collector costs are in docs/litellm.md ("A Python 3.11 crash, and the collector
thread").

So on Python < 3.12 automatic collection is off, and a daemon thread collects instead. Every tick (0.1 s)
it applies CPython's own rule to the counts CPython keeps running (`gc.get_count()`, against `gc.get_threshold()`):
the oldest generation whose count passed its threshold is collected, and the oldest one only when the objects
that reached it since the last full collection are a quarter of those it held then (CPython's guard against
quadratic full collections, which grow with the proxy's heap). An idle proxy collects nothing.
A collection started by that thread can never run inside another thread's `ContextVar.set`, because that C
function holds the GIL from start to end and runs no Python code unless a collection starts within it.
`gc.collect()` from the thread runs the same finalizers automatic collection ran from whichever thread
happened to allocate (LiteLLM's thread pools included), so no new kind of code runs off the event loop.

`install()` runs when this module runs as the main module, and in each worker that uvicorn spawns for
LITELLM_WORKERS > 1 (multiprocessing's spawn imports the parent's main module there as `__mp_main__`). Imported
under its own name (tests, benchmarks) it changes nothing.
"""
from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import threading

from ..errors import ConfigError
from ..settings import ROOT, Settings
from .config import queue_settings, render, write_rendered

# Seconds between two looks at CPython's counts.
DEFAULT_INTERVAL = 0.1
FIXED_IN = (3, 12)


def due(counts: tuple[int, int, int], thresholds: tuple[int, ...], pending: int, long_lived: int) -> int | None:
    """The generation CPython's automatic collection would collect now, or None.

    counts and thresholds as gc.get_count() and gc.get_threshold(); pending: objects that reached the oldest
    generation since the last full collection; long_lived: what it held after that collection."""
    if counts[2] > thresholds[2] and pending > long_lived / 4:
        return 2
    if counts[1] > thresholds[1]:
        return 1
    if counts[0] > thresholds[0]:
        return 0
    return None


def collect_forever(interval: float, stop: threading.Event) -> None:
    # Counting the oldest generation walks it (docs/litellm.md: costly): only after a full collection, as CPython
    # does. What reaches it in between is counted as the survivors of each middle-generation collection.
    long_lived, pending = len(gc.get_objects(2)), 0
    while not stop.wait(interval):
        generation = due(gc.get_count(), gc.get_threshold(), pending, long_lived)
        if generation is None:
            continue
        examined = len(gc.get_objects(0)) + len(gc.get_objects(1)) if generation == 1 else 0
        unreachable = gc.collect(generation)
        if generation == 1:
            pending += max(0, examined - unreachable)
        elif generation == 2:
            long_lived, pending = len(gc.get_objects(2)), 0


def install(interval: float = DEFAULT_INTERVAL, version: tuple[int, int] = sys.version_info[:2]) -> threading.Event | None:
    """Move cyclic GC to a collector thread on an affected Python; returns the thread's stop event, or None."""
    if version >= FIXED_IN or os.environ.get("LLMOPS_PROXY_GC") == "auto":
        return None
    stop = threading.Event()
    gc.disable()
    threading.Thread(target=collect_forever, args=(interval, stop), name="llmops-gc", daemon=True).start()
    return stop


if __name__ in ("__main__", "__mp_main__"):
    install()


def request_log_env(settings: Settings) -> dict[str, str]:
    """What the request-log callback reads in each proxy worker; the project goes on PYTHONPATH so LiteLLM can import it."""
    status_dir = settings.request_log_status_dir
    shutil.rmtree(status_dir, ignore_errors=True)  # the workers of an earlier start wrote their own files
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""),
            "REQUEST_LOG_PATH": str(settings.request_log_path), "REQUEST_LOG_STATUS_DIR": str(status_dir),
            "REQUEST_LOG_DAYS": str(settings.request_log_days), "REQUEST_LOG_MAX_ROWS": str(settings.request_log_max_rows),
            "REQUEST_LOG_CONTENT": "1" if settings.request_log_content else "0"}


def launch(settings: Settings) -> None:
    """Validate, render and exec the proxy (never returns on success)."""
    argv, env = command(settings)
    os.execve(argv[0], argv, env)


PROXY_MAIN = "llmops.proxy.launch"


def litellm_args(argv: list[str]) -> list[str]:
    """LiteLLM's own command-line arguments within an argv that command() returned."""
    return argv[argv.index(PROXY_MAIN) + 1:]


def command(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """Validate and render the config; return the proxy's argv and environment (bench/ starts it this way too)."""
    if not settings.litellm_master_key:
        raise ConfigError(f"{settings.env_file}: LITELLM_MASTER_KEY is empty; run `make setup` to generate one")
    rendered = write_rendered(settings)
    env = dict(os.environ)
    env["LITELLM_MASTER_KEY"] = settings.litellm_master_key
    env["OLLAMA_API_BASE"] = settings.backend_urls[0]
    # Offline: no fetch of the remote cost map, no telemetry.
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("LITELLM_TELEMETRY", "False")
    env.setdefault("LITELLM_LOG", "WARNING")
    # A crash in native code (three SIGSEGVs in libpython, 2026-12-01: see the module docstring) then leaves the
    # Python stack of every thread in logs/litellm.log instead of nothing; supervisor restarts the proxy either way.
    env.setdefault("PYTHONFAULTHANDLER", "1")
    env.update(request_log_env(settings))
    if settings.queue_enabled:
        env["LLMOPS_QUEUE"] = json.dumps(queue_settings(settings, render(settings)))
    workers = settings.litellm_workers
    if workers > 1:
        # Each worker has its own registry; LiteLLM adds them up from this folder (emptied per start).
        multiproc = settings.state_dir / "litellm-prometheus"
        shutil.rmtree(multiproc, ignore_errors=True)
        multiproc.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
    # LiteLLM's own CLI (`litellm ...`), run by this module so that Python 3.11's GC cannot crash it (see there).
    argv = [sys.executable, "-m", PROXY_MAIN, "--config", str(rendered), "--host", settings.bind_host,
            "--port", str(settings.litellm_port), "--num_workers", str(workers)]
    return argv, env


def main() -> int:
    """`python -m llmops.proxy.launch ARGS`: LiteLLM's `litellm ARGS`, in this process."""
    from litellm.proxy.proxy_cli import run_server

    sys.argv[0] = "litellm"
    return run_server()


if __name__ == "__main__":
    sys.exit(main())
