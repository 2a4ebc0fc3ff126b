"""The live progress line on stderr while a run goes, drawn with rich."""
from __future__ import annotations

import asyncio
import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

from .stats import Recorder

REFRESH_S = 0.25


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f}"


def progress_line(rec: Recorder, label: str, started: float) -> Text:
    """done, failed, in flight, rate over the last 10 s, rolling p50 latency."""
    rate, p50 = rec.rolling()
    line = Text()
    line.append(f"{label}  ", style="bold")
    line.append(f"done {rec.ok}  ", style="green")
    line.append(f"failed {rec.failed}  ", style="red" if rec.failed else "")
    line.append(f"in flight {rec.in_flight}  rate {rate:.1f}/s  p50 {_ms(p50)} ms  ")
    line.append(f"{time.perf_counter() - started:.0f} s", style="dim")
    return line


class LiveProgress:
    """Redraws the progress line a few times a second from the event loop (never from a thread)."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self._task: asyncio.Task | None = None
        self._live: Live | None = None

    def watch(self, rec: Recorder, label: str) -> None:
        """Start (or switch) what the line shows."""
        if not self.enabled:
            return
        self.stop()
        started = time.perf_counter()
        self._live = Live(progress_line(rec, label, started), console=self.console,
                          auto_refresh=False, transient=True)
        self._live.start()

        async def tick() -> None:
            while True:
                await asyncio.sleep(REFRESH_S)
                self._live.update(progress_line(rec, label, started), refresh=True)

        self._task = asyncio.get_running_loop().create_task(tick())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._live is not None:
            self._live.stop()
            self._live = None
