"""The embedded backend as a real process (scripts/embedded_backend.py on a free port), with its log kept."""
from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time

from tests.support.env import ROOT


class BackendProcess:
    """scripts/embedded_backend.py on a free port; its log lines are kept for assertions."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "embedded_backend.py"), "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(ROOT),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.url = self._wait_for_url(timeout=30)

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.log.append(line)
            self.lines.put(line)

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                return found.group(1)
        self.stop()
        raise AssertionError("embedded backend did not start:\n" + "".join(self.log))

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
