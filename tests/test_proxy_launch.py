"""The proxy's process (llmops.proxy.launch): Python 3.11's cyclic GC runs from a collector thread."""
from __future__ import annotations

import gc
import signal
import subprocess
import sys
import threading
import weakref

import pytest

from llmops import settings
from llmops.proxy import launch as proxy_main
from tests.support.env import ROOT, test_environ
from tests.support.helpers import wait_for

AFFECTED = sys.version_info[:2] < proxy_main.FIXED_IN
CRASHES = {-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS}


def python(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env={**test_environ(), **env}, capture_output=True,
                          text=True, timeout=120)


def test_it_collects_what_cpythons_own_rule_would():
    t = (700, 10, 10)
    assert proxy_main.due((5, 0, 0), t, 0, 1000) is None  # idle: nothing
    assert proxy_main.due((50_000, 3, 2), t, 0, 1000) == 0
    assert proxy_main.due((50_000, 11, 2), t, 0, 1000) == 1
    # The oldest generation only when a quarter more objects reached it since the last full collection.
    assert proxy_main.due((50_000, 11, 11), t, 200, 1000) == 1
    assert proxy_main.due((50_000, 11, 11), t, 300, 1000) == 2
    assert proxy_main.due((0, 0, 11), t, 300, 1000) == 2


def test_the_oldest_generation_is_walked_only_after_full_collections():
    # Walking it (len(gc.get_objects(2)): ~70 ms in the proxy) every tick would cost a core.
    walks, fulls = [], []
    real = gc.get_objects

    def counted(generation=None):
        walks.append(generation)
        return real(generation) if generation is not None else real()

    def on_gc(phase, info):
        if phase == "stop" and info["generation"] == 2:
            fulls.append(info)

    stop = threading.Event()
    gc.get_objects = counted
    gc.callbacks.append(on_gc)
    try:
        gc.disable()
        thread = threading.Thread(target=proxy_main.collect_forever, args=(0.005, stop), daemon=True)
        thread.start()
        keep = []
        for _ in range(300):
            keep.append([[] for _ in range(50)])  # survivors: every generation's count moves on
            stop.wait(0.002)
    finally:
        stop.set()
        thread.join(timeout=10)
        gc.get_objects = real
        gc.callbacks.remove(on_gc)
        gc.enable()
    assert walks.count(0) >= 1, "the collector ran middle-generation collections"
    assert walks.count(2) <= 1 + len(fulls), (walks.count(2), len(fulls))


@pytest.mark.skipif(not AFFECTED, reason="Python >= 3.12 keeps automatic GC")
def test_the_crash_it_prevents_happens_without_it_and_not_with_it():
    bare = python("tests/support/gc_reentry.py")
    # python/cpython#148891 corrupts the context's HAMT. A release build then dies with SIGSEGV; a CPython built
    # with its assertions on (CI's) stops first at one of them, with SIGABRT.
    assert bare.returncode in CRASHES, (bare.returncode, bare.stdout, bare.stderr)
    guarded = python("tests/support/gc_reentry.py", "--collector")
    assert guarded.returncode == 0 and "survived" in guarded.stdout, guarded.stderr


def test_the_collector_thread_frees_cycles_while_automatic_gc_is_off():
    assert gc.isenabled()  # importing the launch module changed nothing in this process
    stop = proxy_main.install(interval=0.01, version=(3, 11))
    try:
        assert not gc.isenabled() and any(t.name == "llmops-gc" for t in threading.enumerate())

        class Node:
            pass

        node = Node()
        node.cycle = node
        ref = weakref.ref(node)
        del node
        assert ref() is not None  # automatic collection is off

        def freed() -> bool:
            for _ in range(100):  # more cyclic garbage, as a serving proxy makes: CPython's counts move on
                more = Node()
                more.cycle = more
            return ref() is None

        wait_for(freed, 10, "the collector to free a reference cycle")
    finally:
        stop.set()
        gc.enable()


def test_fixed_pythons_and_the_opt_out_keep_automatic_gc(monkeypatch):
    assert proxy_main.install(version=(3, 12)) is None
    monkeypatch.setenv("LLMOPS_PROXY_GC", "auto")
    assert proxy_main.install(version=(3, 11)) is None


@pytest.mark.skipif(not AFFECTED, reason="Python >= 3.12 keeps automatic GC")
def test_it_installs_as_the_main_module_and_in_spawned_workers_only():
    # uvicorn starts LITELLM_WORKERS > 1 with multiprocessing's spawn, which imports the parent's main module as
    # __mp_main__ in each worker.
    spawned = python("-m", "tests.support.spawnprobe")
    assert spawned.returncode == 0 and "imported the main module as __mp_main__" in spawned.stdout, spawned.stderr
    probe = ("import gc, runpy, sys; runpy.run_module('llmops.proxy.launch', run_name=sys.argv[1]); "
             "print('automatic' if gc.isenabled() else 'collector')")
    for run_name, expected in (("__mp_main__", "collector"), ("llmops.proxy.launch", "automatic")):
        done = python("-c", probe, run_name)
        assert done.returncode == 0 and done.stdout.strip() == expected, (run_name, done.stdout, done.stderr)


def test_the_shipped_launch_runs_litellm_through_it(tmp_path):
    environ = {**test_environ(), "LLMOPS_STATE_DIR": str(tmp_path / "state"), "LITELLM_MASTER_KEY": "sk-launch-test",
               "REQUEST_LOG_PATH": str(tmp_path / "requests.db")}
    argv, _ = proxy_main.command(settings.load(env_file=tmp_path / "env", environ=environ))
    assert argv[:3] == [sys.executable, "-m", proxy_main.PROXY_MAIN]
    assert proxy_main.litellm_args(argv)[:2] == ["--config", str(tmp_path / "state" / "litellm_config.yaml")]
