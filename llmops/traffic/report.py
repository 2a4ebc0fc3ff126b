"""What people read: the live progress line and the summary tables, drawn with rich."""
from __future__ import annotations

import asyncio
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .stats import PERCENTILES, Recorder

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


def summary_tables(summary: dict) -> Group:
    """Counts, throughput, and the latency table (p50/p90/p95/p99 in ms)."""
    req = summary["requests"]
    counts = Table(title=f"Traffic summary: {summary.get('model', '?')} at {summary.get('url', '?')}",
                   show_header=False, title_justify="left")
    counts.add_column(style="bold")
    counts.add_column(justify="right")
    counts.add_row("requests", f"{req['total']}")
    counts.add_row("ok", f"{req['ok']}")
    counts.add_row("failed", f"{req['failed']}")
    counts.add_row("  timed out", f"{req['timed_out']}")
    counts.add_row("  rate limited (429)", f"{req['rate_limited']}")
    for kind, n in summary["failures"].items():
        if kind not in ("timeout", "rate_limited"):
            counts.add_row(f"  {kind}", f"{n}")
    if req["cancelled"]:
        counts.add_row("cancelled (interrupted)", f"{req['cancelled']}")
    if summary.get("warmup", {}).get("requests"):
        counts.add_row("warmup (not counted)", f"{summary['warmup']['requests']}")
    counts.add_row("error ratio", f"{summary['error_ratio']:.2%}")
    thr = summary["throughput"]
    counts.add_row("duration", f"{summary['duration_s']:.2f} s")
    counts.add_row("throughput", "-" if thr["requests_per_s"] is None else f"{thr['requests_per_s']:.2f} req/s")
    counts.add_row("output tokens", "-" if thr["output_tokens_per_s"] is None
                   else f"{summary['tokens']['completion']} ({thr['output_tokens_per_s']:.1f} tok/s, "
                        f"from {summary['tokens']['source']})")
    good = summary.get("goodput")
    if good:
        slos = ", ".join(f"{name} <= {_ms(v)} ms" for name, v in
                         (("TTFT", good["slo_ttft_s"]), ("latency", good["slo_latency_s"])) if v is not None)
        ratio = "-" if good["ratio"] is None else f"{good['ratio']:.1%}"
        counts.add_row("goodput", f"{ratio} met {slos}")
    lat = Table(title="Latency (ms)", title_justify="left")
    lat.add_column("")
    for p in PERCENTILES:
        lat.add_column(f"p{p}", justify="right")
    lat.add_column("mean", justify="right")
    lat.add_column("max", justify="right")
    for name, key in (("end to end", "latency_s"), ("time to first token", "ttft_s"),
                      ("inter-token", "itl_s"), ("time per output token", "tpot_s")):
        d = summary[key]
        lat.add_row(name, *(_ms(d[f"p{p}"]) for p in PERCENTILES), _ms(d["mean"]), _ms(d["max"]))
    return Group(counts, lat)


def sweep_table(levels: list[dict], knee: dict) -> Group:
    """One row per concurrency level, and the line that says where throughput stopped growing."""
    table = Table(title="Concurrency sweep", title_justify="left")
    for name in ("concurrency", "req/s", "out tok/s", "p50 ms", "p99 ms", "TTFT p50 ms", "errors"):
        table.add_column(name, justify="right")
    for lvl in levels:
        thr = lvl["throughput"]
        table.add_row(str(lvl["concurrency"]),
                      "-" if thr["requests_per_s"] is None else f"{thr['requests_per_s']:.2f}",
                      "-" if thr["output_tokens_per_s"] is None else f"{thr['output_tokens_per_s']:.1f}",
                      _ms(lvl["latency_s"]["p50"]), _ms(lvl["latency_s"]["p99"]), _ms(lvl["ttft_s"]["p50"]),
                      f"{lvl['error_ratio']:.1%}")
    return Group(table, Text(knee["message"], style="bold"))
