"""Shared fixtures: the test stack's settings, and one real stack started once per session on test ports."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support.env import ROOT, TEST_ENV, test_environ  # noqa: F401 - ROOT is read by fixtures below


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: starts real processes (LiteLLM, Prometheus, llama.cpp)")
    config.addinivalue_line("markers", "browser: drives a real headless Chromium")
    config.addinivalue_line("markers", "soak: long reliability runs, only under `make soak`")


@pytest.fixture(scope="session", autouse=True)
def _loadtests_out_of_the_users_logs(tmp_path_factory):
    """Generator runs in tests keep their folders in a temporary place, not in the user's logs/loadtests."""
    saved = os.environ.get("LLMOPS_LOADTEST_DIR")
    os.environ["LLMOPS_LOADTEST_DIR"] = str(tmp_path_factory.mktemp("loadtests"))
    yield
    if saved is None:
        os.environ.pop("LLMOPS_LOADTEST_DIR", None)
    else:
        os.environ["LLMOPS_LOADTEST_DIR"] = saved


@pytest.fixture(scope="session")
def test_settings():
    """Settings of the session's test stack; creates its env file with a fresh key."""
    from llmops import settings
    from llmops.stack import envfile

    env_file = Path(TEST_ENV["LLMOPS_ENV_FILE"])
    env_file.parent.mkdir(parents=True, exist_ok=True)
    envfile.ensure(env_file, ROOT / ".env.example")
    return settings.load(env_file=env_file, environ=test_environ())


@pytest.fixture(scope="session")
def stack(test_settings):
    """The real stack (embedded backend, LiteLLM, Prometheus, dashboard) on test ports, for the session."""
    from llmops.stack import Stack

    lines: list[str] = []
    instance = Stack(test_settings, out=lines.append)
    saved = dict(os.environ)
    os.environ.update(TEST_ENV)  # supervisord and its programs inherit the test settings
    try:
        instance.start()
    except Exception:
        print("\n".join(lines))
        instance.stop()
        raise
    finally:
        os.environ.clear()
        os.environ.update(saved)
    yield instance
    instance.stop()


@pytest.fixture
def ensure_stack_ready(stack, request):
    """The session stack, restarted where an earlier test stopped a part of it."""
    saved = dict(os.environ)
    os.environ.update(TEST_ENV)
    before = len(_STACK_EVENTS)
    session_out, stack.out = stack.out, _STACK_EVENTS.append
    try:
        stack.start()
    finally:
        stack.out = session_out
        os.environ.clear()
        os.environ.update(saved)
    # What start() had to do for this test ("restarting", "starting litellm", a new pid), for a failed run's summary.
    _STACK_EVENTS[before:] = [f"{request.node.nodeid}: {line}" for line in _STACK_EVENTS[before:] if _notable(line)]
    return stack


_PIDS: dict[str, str] = {}


def _notable(line: str) -> bool:
    """Not the usual "already running (pid N)", unless N is new: then supervisor restarted the service meanwhile."""
    found = re.match(r"\s*(\S+)\s+already running \(pid (\d+)\)", line)
    if not found:
        return bool(line.strip())
    name, pid = found.groups()
    seen, _PIDS[name] = _PIDS.get(name), pid
    return seen is not None and seen != pid


# Lines the session stack's start() printed from ensure_stack_ready, and crashes found in the logs, are written at
# the very end of a failed run: CI keeps only the tail of the output, and a crashed proxy explains many failures.
_STACK_EVENTS: list[str] = []
_CRASH_MARKERS = ("Fatal Python error", "Segmentation fault", "terminated by SIGSEGV", "terminated by SIGABRT")


def _crash_excerpts(folders: list[Path], lines_after: int = 12) -> list[str]:
    found = []
    for folder in folders:
        for log in sorted(folder.rglob("*.log")) if folder.is_dir() else []:
            try:
                text = log.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for i, line in enumerate(text):
                if any(marker in line for marker in _CRASH_MARKERS):
                    found.append(f"{log}:{i + 1}:")
                    found.extend("    " + x for x in text[i:i + lines_after])
                    break
    return found


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not exitstatus:
        return
    folders = [ROOT / TEST_ENV["LLMOPS_LOG_DIR"]]
    basetemp = getattr(config, "_tmp_path_factory", None)
    if basetemp is not None:
        folders.append(basetemp.getbasetemp())
    crashes = _crash_excerpts(folders)
    if _STACK_EVENTS or crashes:
        terminalreporter.section("session stack: what ensure_stack_ready did, and crashes in the logs")
        for line in _STACK_EVENTS[-10:] + (crashes[:30] or ["no crash marker in any log"]):
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def browser():
    """A real headless Chromium for a module's tests. `make test` installs it, so a missing one fails the test.

    Per module, not per session: Playwright's sync API keeps an event loop running in this thread while it is
    open, and the tests between browser modules call asyncio.run()."""
    from llmops.dashboard.screenshot import ARGS, CHROMIUM

    if CHROMIUM is None:
        pytest.fail("Debian's chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield instance
        instance.close()
