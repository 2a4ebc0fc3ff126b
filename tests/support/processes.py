"""The one way the tests run a real process (the LiteLLM proxy, Prometheus, node_exporter, the backend).

ManagedProcess starts the command in its own session (so stop() and kill() reach the whole process group and
nothing else), appends its output to a log file, waits on its readiness with a deadline, and fails at once
with the log's tail when the process exits before it is ready. It can be stopped, SIGKILLed and started again
with the same command and log.
"""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import requests

from llmops.polling import poll_until
from tests.support.env import ROOT

TAIL_CHARS = 3000


def answers_200(url: str) -> Callable[[], bool]:
    """A readiness check: GET url answers 200 (a refused connection is "not yet")."""

    def ready() -> bool:
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    return ready


class ManagedProcess:
    """A real process a test owns: `argv` with `env` in `cwd`, output appended to `log`, ready when `ready()` is
    truthy (a URL string means: it answers 200) within `timeout` seconds. `url` and `port` are for the test."""

    def __init__(self, argv: list[str], log: Path, what: str, ready: Callable[[], object] | str | None = None,
                 env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 60.0, url: str = "",
                 port: int | None = None) -> None:
        self.argv, self.log_path, self.what, self.env, self.cwd, self.timeout = argv, Path(log), what, env, cwd, timeout
        self.ready = answers_200(ready) if isinstance(ready, str) else ready
        self.url, self.port = url, port
        self.proc: subprocess.Popen | None = None

    # -- running ------------------------------------------------------------------------------------
    def start(self) -> ManagedProcess:
        """Start it and wait until it is ready; fail naming it, with its log's tail, when it is not."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        if self.ready is not None:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float | None = None) -> object:
        """ready()'s first truthy value; fails at once if the process exits first, or when time runs out."""

        def check():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.what} exited {self.proc.returncode} before it was ready "
                                     f"(log {self.log_path}):\n{self.tail()}")
            return self.ready()

        wait = self.timeout if timeout is None else timeout
        found = poll_until(check, wait, interval=0.2)
        if not found:
            self.stop()
            raise AssertionError(f"{self.what} not ready within {wait:g} s (log {self.log_path}):\n{self.tail()}")
        return found

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = TAIL_CHARS) -> str:
        """The end of the log (what a failure message shows)."""
        try:
            return self.log_path.read_bytes()[-chars:].decode(errors="replace")
        except OSError:
            return ""

    # -- ending -------------------------------------------------------------------------------------
    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM to its process group, SIGKILL after `timeout`; returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL to its process group (a crash), and reap it."""
        self._signal(signal.SIGKILL)
        self.proc.wait(30)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
