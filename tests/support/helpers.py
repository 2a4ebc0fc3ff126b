"""Small helpers shared by the tests: waiting on a condition or an HTTP answer, free ports."""
from __future__ import annotations

import subprocess
from pathlib import Path

import requests

from llmops.polling import poll_until
from llmops.stack.ports import free_port

__all__ = ["free_port", "wait_for", "wait_http_ok"]


def wait_for(condition, timeout: float = 5.0, what: str = "condition", poll: float = 0.2,
             proc: subprocess.Popen | None = None, ignore: tuple[type[BaseException], ...] = ()):
    """Return condition()'s first truthy value; fail the test after `timeout` seconds.

    With `proc`, fail at once (with its output) when that process exits first; exceptions of the
    `ignore` types count as "not yet" (a server still starting refuses connections).
    """

    def check():
        if proc is not None and proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"{proc.args[0]} exited {proc.returncode} before {what}: {output}")
        try:
            return condition()
        except ignore:
            return None

    last = poll_until(check, timeout, interval=poll)
    if last:
        return last
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def single_model_config(tmp) -> str:
    """The committed config without its fallbacks: these cases measure one model's own retries and timeouts
    (with fallbacks the other model is tried too, doubling the attempts and the time; tests/test_proxy_models.py)."""
    import yaml

    from tests.support.env import ROOT

    data = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
    for key in ("fallbacks", "context_window_fallbacks"):
        data.get("router_settings", {}).pop(key, None)
    path = tmp / "litellm_config.single.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def wait_http_ok(url: str, timeout: float, what: str, proc: subprocess.Popen | None = None,
                 log: Path | None = None) -> None:
    """Wait until GET url answers 200; fail at once, with the log's tail, when `proc` exits first."""

    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise AssertionError(f"{what}: the process exited {proc.returncode} first: {tail}")
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(ready, timeout, what)


def all_at_once(action, threads: int = 4, timeout: float = 10.0) -> tuple[list, list[Exception]]:
    """`action()` in `threads` threads released together by a barrier: (its results, the exceptions raised)."""
    import threading

    start, results, errors = threading.Barrier(threads), [], []

    def run():
        start.wait()
        try:
            results.append(action())
        except Exception as exc:  # noqa: BLE001 - collected for the caller to assert
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout)
    return results, errors
