"""The dashboard's /metrics: probe results and backend model gauges, built from the monitor on each scrape."""
from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# The components the alert rules watch (those of /api/status); the canary is left out while it is turned off.
from .monitor import COMPONENTS

log = logging.getLogger(__name__)

OVERALL_CODE = {"healthy": 0, "degraded": 1, "down": 2}


class DashboardCollector(Collector):
    """A prometheus-client collector over status_fn() (the /api/status dict) and the probe counters."""

    def __init__(
        self,
        status_fn: Callable[[], dict],
        failures_fn: Callable[[], dict[str, int]],
        latency_fn: Callable[[], dict[str, float]],
    ):
        self.status_fn, self.failures_fn, self.latency_fn = status_fn, failures_fn, latency_fn

    def collect(self):
        status = self.status_fn()
        components = status.get("components", {})
        up = GaugeMetricFamily("llmops_component_up", "1 if the component is healthy after hysteresis, else 0.",
                               labels=["component"])
        for name in COMPONENTS:
            component = components.get(name)
            if not component or component.get("error") in ("pending", "unavailable") or component.get("enabled") is False:
                continue  # unknown (not yet probed, no metrics to judge, turned off) is not "down"
            up.add_metric([name], 1.0 if component.get("status") == "healthy" else 0.0)
        yield up

        latency = GaugeMetricFamily("llmops_probe_latency_seconds", "Duration of the latest probe of the component.",
                                    labels=["component"])
        for name, seconds in sorted(self.latency_fn().items()):
            latency.add_metric([name], seconds)
        yield latency

        failures = CounterMetricFamily("llmops_probe_failures", "Failed probes (before hysteresis) since start.",
                                       labels=["component"])
        for name, count in sorted(self.failures_fn().items()):
            failures.add_metric([name], float(count))
        yield failures

        yield GaugeMetricFamily("llmops_overall_status", "Overall verdict: 0 healthy, 1 degraded, 2 down.",
                                value=float(OVERALL_CODE.get(status.get("overall"), 2)))

        proxy = components.get("proxy") or {}
        yield GaugeMetricFamily("llmops_proxy_models", "Models the proxy lists on /v1/models (last good probe).",
                                value=float(len(proxy.get("models") or [])))
        yield from self._backends((components.get("ollama") or {}).get("backends") or [])

    @staticmethod
    def _backends(backends: list[dict]):
        up = GaugeMetricFamily("llmops_backend_up", "1 if the backend answers the Ollama API, else 0.", labels=["backend"])
        models = GaugeMetricFamily("llmops_backend_models", "Models present on the backend (/api/tags).",
                                   labels=["backend"])
        loaded = GaugeMetricFamily("llmops_backend_loaded_models", "Models loaded in memory (/api/ps).",
                                   labels=["backend"])
        size = GaugeMetricFamily("llmops_backend_loaded_model_bytes", "Memory of a loaded model (/api/ps size).",
                                 labels=["backend", "model"])
        vram = GaugeMetricFamily("llmops_backend_loaded_model_vram_bytes", "GPU memory of a loaded model (size_vram).",
                                 labels=["backend", "model"])
        for backend in backends:
            if backend.get("error") == "pending":
                continue
            name = backend.get("backend", "")
            up.add_metric([name], 1.0 if backend.get("status") == "healthy" else 0.0)
            models.add_metric([name], float(len(backend.get("present") or [])))
            loaded.add_metric([name], float(len(backend.get("loaded") or [])))
            for entry in backend.get("loaded") or []:
                size.add_metric([name, str(entry.get("name"))], float(entry.get("size") or 0))
                vram.add_metric([name, str(entry.get("name"))], float(entry.get("size_vram") or 0))
        yield from (up, models, loaded, size, vram)


class Guarded(Collector):
    """Wraps a collector so that one failing (NVML, psutil, supervisor) leaves the rest of /metrics intact."""

    def __init__(self, collector, name: str):
        self.collector, self.name, self.errors = collector, name, 0

    def collect(self):
        try:
            families = list(self.collector.collect())  # all or nothing: no half-written family
        except Exception:
            self.errors += 1
            log.exception("collector %s failed", self.name)
            families = []
        yield from families


def make_registry(*collectors) -> CollectorRegistry:
    """A registry holding only the dashboard's collectors (no process/GC metrics of the test process)."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return registry


def wsgi_app(registry: CollectorRegistry):
    """prometheus-client's own /metrics WSGI app over the registry (content type and negotiation are its own)."""
    return make_wsgi_app(registry)
