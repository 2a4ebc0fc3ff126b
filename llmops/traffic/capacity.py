"""The capacity answer: the most concurrent streams a stack serves within an SLO.

A closed-loop sweep up the levels stops at the first level that breaks the SLO (aggregate bounds on
one level's figures), then bisects between the last good and the first bad level when they are more
than one apart. The search is a pure state machine (`Search`): the runner asks it for the next level,
runs that level, and tells it the level's summary.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..durations import cli_seconds

DEFAULT_LEVELS = (1, 2, 4, 8, 16, 32)
# A chat feels interactive with the first token within 2 s, and 150 ms between tokens (~6.7 tokens/s)
# streams faster than people read; 1% errors is a common availability budget for a load test.
DEFAULT_SLO = "ttft_p95<=2s,itl_p95<=150ms,errors<=1%"
_LATENCY = {"ttft": ("ttft_s", "TTFT"), "itl": ("itl_s", "ITL"), "tpot": ("tpot_s", "TPOT"),
            "latency": ("latency_s", "latency")}
_PERCENTILES = ("p50", "p90", "p95", "p99")
_BOUND = re.compile(r"^\s*([a-z_0-9]+)\s*(<=|>=)\s*(\S+)\s*$")
METRICS = (*(f"{k}_{p}" for k in _LATENCY for p in _PERCENTILES), "errors", "goodput")


@dataclass(frozen=True)
class Bound:
    """One bound of the SLO: a level's metric must be <= (or, for goodput, >=) the limit."""

    metric: str
    op: str
    limit: float  # seconds for latencies, a fraction for errors and goodput

    @property
    def ratio(self) -> bool:
        return self.metric in ("errors", "goodput")

    def shown(self, value: float | None = None) -> str:
        """The limit (or a value of the metric) in the unit it was written in: 2 s, 150 ms, 1%."""
        v = self.limit if value is None else value
        if self.ratio:
            return f"{v * 100:.3g}%"
        return f"{v * 1000:.3g} ms" if v < 1 else f"{v:.3g} s"

    @property
    def label(self) -> str:
        if self.ratio:
            return self.metric
        kind, p = self.metric.split("_")
        return f"{_LATENCY[kind][1]} {p}"

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.shown()}"

    def value(self, level: dict) -> float | None:
        """This bound's metric in a level's summary (None when it was not measured)."""
        if self.metric == "errors":
            return capacity_error_ratio(level)
        if self.metric == "goodput":
            goodput = level.get("goodput") or {}
            return goodput.get("ratio")
        kind, p = self.metric.split("_")
        return (level.get(_LATENCY[kind][0]) or {}).get(p)

    def met(self, value: float | None) -> bool:
        if value is None:
            return False
        return value <= self.limit if self.op == "<=" else value >= self.limit


def capacity_error_ratio(level: dict) -> float | None:
    """Failures over counted requests, 429s included: a request the queue refused was not served."""
    req = level.get("requests") or {}
    total = req.get("total") or 0
    return (total - (req.get("ok") or 0)) / total if total else None


def parse_slo(text: str) -> tuple[Bound, ...]:
    """`ttft_p95<=2s,itl_p95<=150ms,errors<=1%` as bounds; ValueError naming the part that is wrong."""
    bounds = []
    for part in (p for p in text.split(",") if p.strip()):
        m = _BOUND.match(part)
        if not m:
            raise ValueError(f"{part.strip()!r} is not a bound like ttft_p95<=2s or errors<=1%")
        metric, op, raw = m.groups()
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; known: ttft/itl/tpot/latency with _p50/_p90/_p95/_p99, "
                             "errors, goodput")
        if (metric == "goodput") != (op == ">="):
            raise ValueError(f"{part.strip()!r}: goodput takes >=, the others <=")
        if metric in ("errors", "goodput"):
            try:
                limit = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
            except ValueError:
                raise ValueError(f"{part.strip()!r}: {raw!r} is not a ratio like 1% or 0.01") from None
            if not 0 <= limit <= 1:
                raise ValueError(f"{part.strip()!r}: a ratio is within 0-100%")
        else:
            try:
                limit = cli_seconds(raw)
            except ValueError:
                raise ValueError(f"{part.strip()!r}: {raw!r} is not a duration like 2s or 150ms") from None
            if not limit > 0:
                raise ValueError(f"{part.strip()!r}: a duration must be > 0")
        if any(b.metric == metric for b in bounds):
            raise ValueError(f"{metric} is bounded twice")
        bounds.append(Bound(metric, op, limit))
    if not bounds:
        raise ValueError("no bound given")
    return tuple(bounds)


def judge(level: int, summary: dict, slo: tuple[Bound, ...]) -> dict:
    """One level's figures against the SLO: each bound's value and whether it held, and the first it broke."""
    checks = []
    for b in slo:
        value = b.value(summary)
        checks.append({"bound": str(b), "metric": b.metric, "limit": b.limit, "value": value, "met": b.met(value)})
    req = summary.get("requests") or {}
    broken = [c for c in checks if not c["met"]]
    return {"concurrency": level, "requests": req.get("total", 0), "ok": req.get("ok", 0),
            "rate_limited": req.get("rate_limited", 0), "error_ratio": capacity_error_ratio(summary),
            "requests_per_s": (summary.get("throughput") or {}).get("requests_per_s"),
            "checks": checks, "within_slo": not broken, "broken": [c["metric"] for c in broken]}


class Search:
    """Which level to run next: up the levels until one breaks, then bisect the gap below it."""

    def __init__(self, levels: tuple[int, ...], slo: tuple[Bound, ...]) -> None:
        if not levels or list(levels) != sorted(set(levels)) or levels[0] < 1:
            raise ValueError(f"capacity levels must rise from >= 1, not {levels}")
        self.levels, self.slo = tuple(levels), slo
        self.judged: dict[int, dict] = {}
        self.order: list[int] = []  # levels in the order they ran
        self.good = 0  # the highest level within the SLO so far (0: none)
        self.bad: int | None = None  # the lowest level that broke it

    def next(self) -> int | None:
        """The next level to run, or None when the answer is known."""
        if self.bad is None:
            higher = [lv for lv in self.levels if lv > self.good and lv not in self.judged]
            return higher[0] if higher else None
        if self.bad - self.good > 1:
            return (self.good + self.bad) // 2
        return None

    def record(self, level: int, summary: dict) -> dict:
        """Tell the search how `level` went; returns its judgement."""
        judged = judge(level, summary, self.slo)
        self.judged[level] = judged
        self.order.append(level)
        if judged["within_slo"]:
            self.good = max(self.good, level)
        else:
            self.bad = level if self.bad is None else min(self.bad, level)
        return judged

    def answer(self, slo_text: str, interrupted: bool = False) -> dict:
        """The summary's `capacity` part, with the one-line answer."""
        broke = self.judged.get(self.bad) if self.bad is not None else None
        first_broken = next((c for c in broke["checks"] if not c["met"]), None) if broke else None
        levels = [self.judged[lv] for lv in sorted(self.judged)]
        warnings = few_requests_warnings(levels, self.slo)
        done = self.next() is None and not interrupted
        return {"max_concurrency": self.good if self.order else None, "broke_at": self.bad,
                "broken_bound": first_broken and {k: first_broken[k] for k in ("bound", "metric", "limit", "value")},
                "slo": slo_text, "bounds": [str(b) for b in self.slo], "levels": levels, "order": list(self.order),
                "top_level": self.levels[-1], "complete": done, "warnings": warnings,
                "message": self.message(first_broken, done)}

    def message(self, broken: dict | None, done: bool) -> str:
        if not self.order:
            return "no level ran: no capacity answer"
        runs = ", ".join(f"{self.judged[lv]['requests']} at {lv}" for lv in sorted(self.judged))
        tail = f" (requests per level: {runs})"
        if not done:
            return f"interrupted: within the SLO up to {self.good} concurrent streams so far{tail}"
        if broken is None:
            return (f"serves {self.good} concurrent streams within the SLO, the highest level asked; "
                    f"try higher levels{tail}")
        bound = next(b for b in self.slo if b.metric == broken["metric"])
        value = "not measured" if broken["value"] is None else bound.shown(broken["value"])
        what = f"{bound.label} is {value} (bound {bound.shown()})"
        if self.good == 0:
            return f"serves 0 concurrent streams within the SLO: at 1, {what}{tail}"
        return f"serves {self.good} concurrent streams within the SLO; at {self.bad}, {what}{tail}"


def few_requests_warnings(levels: list[dict], slo: tuple[Bound, ...]) -> list[str]:
    """Levels with so few requests that one error already passes the error bound (one in 40 is 2.5%)."""
    bound = next((b for b in slo if b.metric == "errors"), None)
    if bound is None:
        return []
    out = []
    for lv in levels:
        n = lv["requests"]
        if n and 1 / n > bound.limit:
            need = math.ceil(1 / bound.limit) if bound.limit > 0 else None
            more = f"; {need}+ requests judge it (a longer --duration or a higher --max)" if need else ""
            out.append(f"concurrency {lv['concurrency']}: {n} requests, so one error is already "
                       f"{bound.shown(1 / n)}, over errors<={bound.shown()}{more}")
    return out
