"""Shared fixtures: the test stack's settings, and one real stack started once per session on test ports."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Importing litellm (the request-log callback's tests, the Router test) would otherwise load the
# project's .env into os.environ (LiteLLM's DEV mode runs load_dotenv), leaking the user's key into tests.
os.environ.setdefault("LITELLM_MODE", "PRODUCTION")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # and must not reach for the network

# The test stack never collides with a stack the user runs: its own ports, state, logs and key.
# LLMOPS_TEST_PORT_OFFSET shifts every test port, so two checkouts can run their suites side by side.
_OFFSET = int(os.environ.get("LLMOPS_TEST_PORT_OFFSET", "0"))
TEST_ENV = {
    "LLMOPS_STATE_DIR": ".run-test/state",
    "LLMOPS_LOG_DIR": ".run-test/logs",
    "PROMETHEUS_DATA_DIR": ".run-test/prometheus-data",
    "REQUEST_LOG_PATH": ".run-test/requests.db",
    "LLMOPS_ENV_FILE": str(ROOT / ".run-test" / "env"),
    "OLLAMA_PORT": str(21434 + _OFFSET),
    "LITELLM_PORT": str(18000 + _OFFSET),
    "PROMETHEUS_PORT": str(19090 + _OFFSET),
    "DASHBOARD_PORT": str(13001 + _OFFSET),
    "NODE_EXPORTER_PORT": str(19100 + _OFFSET),
    "PROBE_INTERVAL": "1",
    "CANARY_INTERVAL": "10",
    "BIND_HOST": "127.0.0.1",
}


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


def test_environ() -> dict[str, str]:
    """os.environ with the test stack's settings (the environment wins over any .env)."""
    env = dict(os.environ)
    env.update(TEST_ENV)
    return env


test_environ.__test__ = False  # a helper, not a test


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
