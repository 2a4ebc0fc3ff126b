"""The backend's own Prometheus metrics; the alert rules and the dashboard depend on these names."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
GENERATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


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
        self.in_flight = Gauge("llm_backend_in_flight", "Generations running (0 or 1).", registry=r)
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
        if process:
            # process_resident_memory_bytes and friends: the backend's memory without a node exporter.
            ProcessCollector(registry=r)

    def watch_models(self, models) -> None:
        """Read the loaded-models gauges from the manager at scrape time."""
        self.loaded_models.set_function(lambda: len(models.snapshot()))
        self.loaded_bytes.set_function(lambda: sum(getattr(m.engine, "memory_bytes", 0) for m in models.snapshot()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
