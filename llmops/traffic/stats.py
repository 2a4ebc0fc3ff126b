"""Aggregates of finished requests: counts, percentiles, throughput and goodput, in the summary's shape."""
from __future__ import annotations

import random
import time
from array import array
from collections import Counter, deque

from .. import outcomes
from . import client
from .mix import ModelMix, PriorityMix
from .results import distribution, outcome_counts, percentile

ITL_RESERVOIR = 200_000  # inter-token gaps kept for percentiles; bounds memory on long runs


class Recorder:
    """Takes each finished request once and keeps what the summary and the progress line need."""

    def __init__(self, slo_ttft: float | None = None, slo_latency: float | None = None,
                 seed: int | None = None, clock=time.perf_counter) -> None:
        self.slo_ttft = slo_ttft
        self.slo_latency = slo_latency
        self.counts: Counter[str] = Counter()  # by class (outcomes.GENERATOR_CLASSES)
        self.details: Counter[str] = Counter()  # by detail, the finer status
        self.cancelled = 0  # cancelled by the run itself (Ctrl-C): not counted anywhere else
        self.latency = array("d")
        self.ttft = array("d")
        self.tpot = array("d")
        self.itl = array("d")
        self._itl_seen = 0
        self._rng = random.Random(seed)
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.inputs = 0  # embeddings computed (texts in ok embeddings requests)
        self.token_sources: Counter[str] = Counter()
        self.slo_met = 0
        self.first_start: float | None = None
        self.last_end: float | None = None
        self.in_flight = 0
        self._clock = clock
        self._recent_latency: deque[float] = deque(maxlen=200)
        self._recent_done: deque[float] = deque()
        self._started_clock = clock()

    @property
    def total(self) -> int:
        """Finished requests, each in one class; the ones the run cancelled are not among them."""
        return sum(self.counts.values())

    @property
    def ok(self) -> int:
        return self.counts[outcomes.OK]

    @property
    def failed(self) -> int:
        """Finished but not ok (rate limits and timeouts included)."""
        return self.total - self.ok

    def started(self, start_s: float) -> None:
        """A request was sent at `start_s` (seconds from the run's start)."""
        self.in_flight += 1
        if self.first_start is None or start_s < self.first_start:
            self.first_start = start_s

    def add(self, r: client.RequestResult) -> None:
        """Account for one finished (or cancelled) request; call exactly once per request."""
        self.in_flight -= 1
        outcome = r.outcome
        if outcome is None:
            self.cancelled += 1
            r.slo_ok = None
            return
        self.counts[outcome] += 1
        self.details[r.detail] += 1
        now = self._clock()
        self._recent_done.append(now)
        if r.latency_s is not None:
            end = r.start_s + r.latency_s
            if self.last_end is None or end > self.last_end:
                self.last_end = end
        has_slo = self.slo_ttft is not None or self.slo_latency is not None
        if outcome != outcomes.OK:
            r.slo_ok = False if has_slo else None
            return
        self.latency.append(r.latency_s)
        self._recent_latency.append(r.latency_s)
        if r.ttft_s is not None:
            self.ttft.append(r.ttft_s)
        if r.tpot_s is not None:
            self.tpot.append(r.tpot_s)
        for gap in r.itl_s:
            self._add_itl(gap)
        self.prompt_tokens += r.prompt_tokens or 0
        self.completion_tokens += r.completion_tokens or 0
        self.inputs += r.inputs or 0
        self.token_sources[r.tokens_source or "none"] += 1
        if has_slo:
            r.slo_ok = self.meets_slo(r)
            self.slo_met += r.slo_ok

    def meets_slo(self, r: client.RequestResult) -> bool:
        """Ok and within every SLO set; without a TTFT (not streamed) the whole latency stands in."""
        if r.outcome != outcomes.OK:
            return False
        if self.slo_ttft is not None:
            ttft = r.ttft_s if r.ttft_s is not None else r.latency_s
            if ttft > self.slo_ttft:
                return False
        if self.slo_latency is not None and r.latency_s > self.slo_latency:
            return False
        return True

    def _add_itl(self, gap: float) -> None:
        # Reservoir sampling (algorithm R): a uniform sample of every gap in bounded memory.
        self._itl_seen += 1
        if len(self.itl) < ITL_RESERVOIR:
            self.itl.append(gap)
        else:
            slot = self._rng.randrange(self._itl_seen)
            if slot < ITL_RESERVOIR:
                self.itl[slot] = gap

    def rolling(self, window: float = 10.0) -> tuple[float, float | None]:
        """(completions/s over the last `window` seconds, p50 latency of the last 200 ok requests)."""
        now = self._clock()
        while self._recent_done and self._recent_done[0] < now - window:
            self._recent_done.popleft()
        span = min(window, now - self._started_clock)
        rate = len(self._recent_done) / span if span > 0 else 0.0
        recent = sorted(self._recent_latency)
        return rate, percentile(recent, 50)

    def mark_start(self) -> None:
        """The clock reading the rolling rate counts from."""
        self._started_clock = self._clock()

    def elapsed(self) -> float:
        """Seconds from the first send to the last completion."""
        if self.first_start is None or self.last_end is None:
            return 0.0
        return max(self.last_end - self.first_start, 0.0)

    def error_ratio(self) -> float:
        """Failures other than rate limits, over finished requests (cancellations are not among them)."""
        return outcome_counts(self.counts, self.details, self.cancelled)["error_ratio"]

    def summary(self) -> dict:
        """The numbers `--summary-json` writes and the summary table shows."""
        elapsed = self.elapsed()
        per_s = (lambda n: n / elapsed) if elapsed > 0 else (lambda n: None)
        sources = [k for k in self.token_sources if k != "none"]
        goodput = None
        if self.slo_ttft is not None or self.slo_latency is not None:
            measured = self.total
            goodput = {
                "slo_ttft_s": self.slo_ttft, "slo_latency_s": self.slo_latency, "met": self.slo_met,
                "ratio": self.slo_met / measured if measured else None,
                "requests_per_s": per_s(self.slo_met),
            }
        return {
            **outcome_counts(self.counts, self.details, self.cancelled),
            "duration_s": elapsed,
            "throughput": {
                "requests_per_s": per_s(self.ok),
                "output_tokens_per_s": per_s(self.completion_tokens),
                "total_tokens_per_s": per_s(self.completion_tokens + self.prompt_tokens),
                "embeddings_per_s": per_s(self.inputs) if self.inputs else None,
            },
            "tokens": {
                "prompt": self.prompt_tokens, "completion": self.completion_tokens,
                "source": sources[0] if len(sources) == 1 else ("mixed" if sources else None),
            },
            "latency_s": distribution(self.latency),
            "ttft_s": distribution(self.ttft),
            "itl_s": distribution(self.itl),
            "tpot_s": distribution(self.tpot),
            "goodput": goodput,
        }


def _class_part(rec: Recorder | None, share: float | None) -> dict:
    """One class of a mix (a model, a priority): its counts by outcome, throughput and p50/p95/p99 latency and TTFT."""
    s = (rec or Recorder()).summary()
    return {
        "share": share,
        "requests": s["requests"], "outcomes": s["outcomes"], "failures": s["failures"], "details": s["details"],
        "error_ratio": s["error_ratio"],
        "throughput": s["throughput"], "tokens": s["tokens"],
        "latency_s": {k: s["latency_s"][k] for k in ("count", "p50", "p95", "p99")},
        "ttft_s": {k: s["ttft_s"][k] for k in ("count", "p50", "p95", "p99")},
    }


def per_model(mix: ModelMix, recorders: dict[str, Recorder]) -> dict[str, dict]:
    """The summary's "models" part: one entry per model of the mix (one that got no request has zero counts)."""
    return {model: _class_part(recorders.get(model), mix.share(model) if model in mix.models else None)
            for model in (*mix.models, *(m for m in recorders if m not in mix.models))}


def per_priority(mix: PriorityMix | None, recorders: dict[int, Recorder]) -> dict[str, dict]:
    """The summary's "priorities" part: one entry per priority sent, lowest (most urgent) first, keyed by the
    priority as text (JSON's keys are); a class of the mix that got no request has zero counts; {} when none
    was sent."""
    classes = sorted({*(mix.priorities if mix else ()), *recorders})
    return {str(p): {"priority": p, **_class_part(recorders.get(p), mix.share(p) if mix and p in mix.priorities
                                                   else None)} for p in classes}
