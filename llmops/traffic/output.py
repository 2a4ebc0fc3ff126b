"""Result files: one JSON line per request as it finishes, and the summary document."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .client import RequestResult, dumps


class JsonlWriter:
    """Appends one line per finished request and flushes it, so a crash loses nothing written."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self.lines = 0

    def __call__(self, result: RequestResult) -> None:
        self._file.write(dumps(result.record()) + b"\n")
        self._file.flush()
        self.lines += 1

    def close(self) -> None:
        self._file.close()


def write_summary(path: Path | str, summary: dict) -> Path:
    """Write the summary JSON atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, path)
    return path
