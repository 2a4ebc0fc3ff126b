"""The backend's own Prometheus metrics; the alert rules and the dashboard depend on these names."""
from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
GENERATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
RATE_WINDOW = 10.0  # seconds over which the tokens-per-second gauges average


class BackendMetrics:
    """One registry per server, so tests can run several servers in one process."""

    def __init__(self, registry: CollectorRegistry | None = None, process: bool = True):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "llm_backend_requests", "HTTP requests by route and status (499: client went away).",
            ["endpoint", "status"], registry=r,
        )
        self.queue_depth = Gauge("llm_backend_queue_depth", "Requests waiting for the engine.", registry=r)
        self.in_flight = Gauge("llm_backend_in_flight", "Sequences running in the models' slots.", registry=r)
        self.rejected = Counter("llm_backend_rejected", "Requests answered 503 because the queue was full.", registry=r)
        self.prompt_tokens = Counter("llm_backend_prompt_tokens", "Prompt tokens evaluated.", ["model"], registry=r)
        self.output_tokens = Counter("llm_backend_output_tokens", "Tokens generated.", ["model"], registry=r)
        self.ttft = Histogram(
            "llm_backend_time_to_first_token_seconds",
            "From request arrival (queue wait included) to the first generated token.",
            ["model"], buckets=TTFT_BUCKETS, registry=r,
        )
        self.generation = Histogram(
            "llm_backend_generation_seconds", "Time a request held the engine (prompt evaluation and generation).",
            ["model"], buckets=GENERATION_BUCKETS, registry=r,
        )
        self.jobs = Counter(
            "llm_backend_jobs", "Work done on the engine thread, by kind (chat, generate, embed).", ["kind"], registry=r,
        )
        self.loaded_models = Gauge("llm_backend_loaded_models", "Models in memory.", registry=r)
        self.loaded_bytes = Gauge("llm_backend_loaded_model_bytes", "Estimated memory of the loaded models.", registry=r)
        self.slots = Gauge("llm_backend_slots", "Parallel slots of each chat model served, loaded or not "
                           "(BACKEND_NUM_PARALLEL).", ["model"], registry=r)
        self.slots_busy = Gauge("llm_backend_slots_busy", "Slots running a sequence.", ["model"], registry=r)
        self.kv_usage = Gauge(
            "llm_backend_kv_cache_usage_ratio",
            "KV cache cells held by the slots (running and cached prompts) over the model's cells.", ["model"], registry=r,
        )
        self.batch_size = Histogram("llm_backend_batch_size", "Sequences decoded in one step.", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.prompt_rate = Gauge("llm_backend_prompt_tokens_per_second",
                                 f"Prompt tokens evaluated per second over the last {RATE_WINDOW:g} s.", ["model"], registry=r)
        self.output_rate = Gauge("llm_backend_output_tokens_per_second",
                                 f"Tokens generated per second over the last {RATE_WINDOW:g} s.", ["model"], registry=r)
        self._steps: dict[str, deque] = {}
        self._steps_lock = threading.Lock()
        if process:
            # process_resident_memory_bytes and friends: the backend's memory without a node exporter.
            ProcessCollector(registry=r)

    def watch_models(self, models) -> None:
        """Read the loaded-models gauges from the manager at scrape time."""
        self.loaded_models.set_function(lambda: len(models.snapshot()))
        self.loaded_bytes.set_function(lambda: sum(getattr(m.engine, "memory_bytes", 0) for m in models.snapshot()))

    def observe_step(self, tag: str, sequences: int, prompt_tokens: int, output_tokens: int) -> None:
        """One decode step of a model (engine thread)."""
        self.batch_size.labels(tag).observe(sequences)
        now = time.monotonic()
        with self._steps_lock:
            steps = self._steps.get(tag)
            if steps is None:
                steps = self._steps[tag] = deque()
                self.prompt_rate.labels(tag).set_function(lambda t=tag: self._rate(t, 1))
                self.output_rate.labels(tag).set_function(lambda t=tag: self._rate(t, 2))
            steps.append((now, prompt_tokens, output_tokens))
            while steps and steps[0][0] < now - RATE_WINDOW:
                steps.popleft()

    def _rate(self, tag: str, column: int) -> float:
        now = time.monotonic()
        with self._steps_lock:
            steps = self._steps.get(tag, ())
            return sum(step[column] for step in steps if step[0] >= now - RATE_WINDOW) / RATE_WINDOW

    def observe_slots(self, tag: str, slots: int, busy: int, cells: int, total_cells: int) -> None:
        self.slots.labels(tag).set(slots)
        self.slots_busy.labels(tag).set(busy)
        self.kv_usage.labels(tag).set(min(1.0, cells / total_cells) if total_cells else 0.0)

    def publish_slots(self, tags: list[str], slots: int) -> None:
        """The slot count of every chat model served (at scrape time), so that a reader such as the proxy's
        priority queue knows the capacity before a model loads and after it unloads."""
        for tag in tags:
            self.slots.labels(tag).set(slots)

    def forget_model(self, tag: str) -> None:
        """An unloaded model's busy, KV and rate series go away (as it leaves /api/ps); its slot count stays."""
        for gauge in (self.slots_busy, self.kv_usage, self.prompt_rate, self.output_rate):
            try:
                gauge.remove(tag)
            except KeyError:
                pass
        with self._steps_lock:
            self._steps.pop(tag, None)

    def render(self) -> bytes:
        return generate_latest(self.registry)
