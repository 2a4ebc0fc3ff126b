"""What the benchmarks share: waiting for a server to answer (a helper, not a benchmark: bench.sh skips _*.py)."""
from __future__ import annotations

import subprocess

import requests

from llmops.polling import poll_until


def wait_http(url: str, timeout: float, headers: dict | None = None, proc: subprocess.Popen | None = None) -> None:
    """Poll until GET url answers 200; fail early if the process died."""

    def answered() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode} before {url} answered")
        try:
            return requests.get(url, headers=headers, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    if not poll_until(answered, timeout):
        raise RuntimeError(f"{url} not ready within {timeout:.0f} s")
