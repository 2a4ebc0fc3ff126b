"""A stack of a test module's own: its ports, state, logs, data and env file under one folder of .run-test/,
started by the stack's own lifecycle (supervisor, rendered configs) and stopped on every path."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from llmops import settings as settings_mod
from llmops.stack import Stack, envfile
from tests.support.env import ROOT, test_environ

# An earlier run's history, silences and alerts: a module's stack starts from none.
LEFTOVERS = ("alerts.db", "alerts.db-wal", "alerts.db-shm", "alertmanager-data", "prometheus-data")


def own_environ(folder: Path, **overrides: str) -> dict[str, str]:
    """The settings of a stack kept in `folder` (state, logs, data, history, env file), plus `overrides`."""
    rel = folder.relative_to(ROOT).as_posix()
    return {
        "LLMOPS_STATE_DIR": f"{rel}/state", "LLMOPS_LOG_DIR": f"{rel}/logs",
        "PROMETHEUS_DATA_DIR": f"{rel}/prometheus-data", "ALERTMANAGER_DATA_DIR": f"{rel}/alertmanager-data",
        "ALERT_HISTORY_PATH": f"{rel}/alerts.db", "REQUEST_LOG_PATH": f"{rel}/requests.db",
        "LLMOPS_ENV_FILE": str(folder / "env"), **overrides,
    }


def fresh(folder: Path) -> None:
    """Remove what an earlier run left in `folder` (history, silences, alerts) and make sure it exists."""
    for leftover in LEFTOVERS:
        path = folder / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)


def load(overrides: dict[str, str]) -> settings_mod.Settings:
    """The settings such a stack runs with: the test environment, then `overrides`; the env file made if missing."""
    env_file = Path(overrides["LLMOPS_ENV_FILE"])
    envfile.ensure(env_file, ROOT / ".env.example")
    return settings_mod.load(env_file=env_file, environ={**test_environ(), **overrides})


@contextmanager
def running(overrides: dict[str, str], only: Sequence[str] = ()) -> Iterator[Stack]:
    """The stack started (every service, or those in `only`, in that order) with `overrides` in os.environ
    while it runs (supervisord and its programs inherit them); stopped, and os.environ restored, on every path."""
    instance = Stack(load(overrides), out=print)
    saved = dict(os.environ)
    os.environ.update(overrides)
    try:
        for name in only or (None,):
            instance.start(name)
        yield instance
    finally:
        try:
            instance.stop()
        finally:
            os.environ.clear()
            os.environ.update(saved)
