"""The embedded backend as a real process (scripts/embedded_backend.py on a free port), a ManagedProcess."""
from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from tests.support.processes import ManagedProcess

LISTENING = re.compile(r"listening on (http://\S+)")


class BackendProcess(ManagedProcess):
    """scripts/embedded_backend.py on a free port, started at once; ready when its log says where it listens.

    `log` is its output as lines, for assertions; the file is `log_path` (in a temporary folder unless given).
    """

    def __init__(self, *args: str, log_path: Path | None = None):
        path = log_path or Path(tempfile.mkdtemp(prefix="llmops-backend-")) / "backend.log"
        script = str(Path(__file__).resolve().parents[2] / "scripts" / "embedded_backend.py")
        super().__init__([sys.executable, script, "--host", "127.0.0.1", "--port", "0", *args], path,
                         "the embedded backend", ready=self._listening, timeout=30)
        self.start()

    def _listening(self) -> str | None:
        found = LISTENING.search(self.tail(1_000_000))
        if found:
            self.url = found.group(1)
        return self.url or None

    @property
    def log(self) -> list[str]:
        return self.tail(10_000_000).splitlines(keepends=True)

    def stop(self, timeout: float = 10) -> int | None:
        return super().stop(timeout)
