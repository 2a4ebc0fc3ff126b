"""Runs the LiteLLM proxy CLI in this process with an import audit (benchmark and test instrument).

Usage: python -m tests.support.audited_proxy <litellm CLI arguments> (llmops.proxy.launch.litellm_args of the shipped argv)

- An audit hook (sys.addaudithook) counts CPython's "import" events. CPython raises one only when a module is
  not in sys.modules, so once the proxy is warm every event is an import that failed before (or a module
  imported for the first time); an import run by a module that is itself being imported is counted apart, as
  nested. On SIGUSR1 the counts so far, and which of the names are loaded, are written
  as JSON to $LLMOPS_IMPORT_AUDIT (atomically: a temporary file, then a rename).
- $LLMOPS_HIDE_MODULES (comma-separated, e.g. "httptools,opentelemetry.sdk") makes those packages fail to
  import as if they were not installed, so a benchmark can measure what an installed package buys.

No sitecustomize and no -X importtime: the hook and the finder are installed here, before LiteLLM is imported.
Meant for one worker (uvicorn then serves in this process); the audit reports this process only, and with
--num_workers > 1 the spawned workers are not known to be covered (the benchmark audits 1-worker proxies only).
"""
from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from importlib.abc import MetaPathFinder

HIDDEN = tuple(name for name in os.environ.get("LLMOPS_HIDE_MODULES", "").split(",") if name)
_imports: Counter[str] = Counter()      # every "import" event, nested ones included
_statements: Counter[str] = Counter()   # import statements run by code that is not itself being imported


class HideModules(MetaPathFinder):
    """A finder that answers 'not installed' for the hidden packages and their submodules."""

    def find_spec(self, fullname, path=None, target=None):
        if any(fullname == name or fullname.startswith(name + ".") for name in HIDDEN):
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden by tests/support/audited_proxy.py)",
                                      name=fullname)
        return None


def _audit(event: str, args: tuple) -> None:
    if event != "import":
        return
    _imports[args[0]] += 1
    # An import statement run by a module that is itself being imported is nested (the failing OTel import runs
    # litellm.integrations.otel.logger, whose own opentelemetry.sdk import fails): count the outer one alone.
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return
        frame = frame.f_back
    _statements[args[0]] += 1


def _dump(signum, frame) -> None:
    path = os.environ.get("LLMOPS_IMPORT_AUDIT")
    if not path:
        return
    snapshot = {"imports": dict(_imports), "statements": dict(_statements),
                "loaded": sorted(name for name in _imports if name in sys.modules),
                "hidden": list(HIDDEN)}
    tmp = f"{path}.tmp"
    with open(tmp, "w") as out:
        json.dump(snapshot, out)
    os.replace(tmp, path)


# Only where this file runs as the proxy, never where a caller imports its helpers: an audit hook cannot be
# removed.
if __name__ in ("__main__", "__mp_main__"):
    if HIDDEN:
        sys.meta_path.insert(0, HideModules())
    sys.addaudithook(_audit)


def read_snapshot(pid: int, path: str, timeout: float = 10.0) -> dict:
    """Ask the proxy (pid) for its import counts and return them (used by the benchmark and the tests)."""
    import time

    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as src:
                return json.load(src)
        time.sleep(0.05)
    raise TimeoutError(f"the proxy (pid {pid}) wrote no import audit to {path} in {timeout} s")


def failing_imports(before: dict, after: dict, kind: str = "statements") -> Counter[str]:
    """Imports attempted between two snapshots of modules that are still not loaded: failed imports.

    kind "statements" counts the import statements that failed (a failing module's own failing imports not
    again); "imports" counts every import event."""
    loaded = set(after["loaded"])
    return Counter({name: count - before[kind].get(name, 0) for name, count in after[kind].items()
                    if name not in loaded and count > before[kind].get(name, 0)})


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _dump)
    # As the shipped launch does: Python 3.11's cyclic GC from a collector thread (LLMOPS_PROXY_GC=auto: not).
    from litellm import run_server

    from llmops.proxy import launch as proxy_main

    proxy_main.install()

    sys.argv = ["litellm", *sys.argv[1:]]
    run_server()
