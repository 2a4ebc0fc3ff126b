"""Host telemetry: each stack process's RSS and CPU (psutil), the host summary (node_exporter via Prometheus)."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# node_exporter's figures for the host summary, as Prometheus instant queries (one node target).
HOST_QUERIES: dict[str, str] = {
    "cpu_utilization_ratio": '1 - avg(rate(node_cpu_seconds_total{job="node", mode="idle"}[1m]))',
    "cpu_count": 'count(node_cpu_seconds_total{job="node", mode="idle"})',
    "memory_total_bytes": 'node_memory_MemTotal_bytes{job="node"}',
    "memory_available_bytes": 'node_memory_MemAvailable_bytes{job="node"}',
    "load1": 'node_load1{job="node"}',
    "load5": 'node_load5{job="node"}',
    "load15": 'node_load15{job="node"}',
    "disk_total_bytes": 'node_filesystem_size_bytes{job="node", mountpoint="/"}',
    "disk_free_bytes": 'node_filesystem_avail_bytes{job="node", mountpoint="/"}',
}

class _CpuDelta:
    """Host CPU utilisation between two calls, from psutil's cumulative CPU times."""

    def __init__(self):
        self._last: tuple[float, float] | None = None

    def ratio(self) -> float | None:
        times = psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        total = sum(times)
        last, self._last = self._last, (idle, total)
        if last is None or total <= last[1]:
            return None
        return max(0.0, min(1.0, 1.0 - (idle - last[0]) / (total - last[1])))


_cpu_delta = _CpuDelta()


def psutil_host_summary(disk_path: str = "/") -> dict[str, float | None]:
    """The host summary from psutil (utilisation is None on the first call: it needs two readings)."""
    memory = psutil.virtual_memory()
    load1, load5, load15 = os.getloadavg()
    try:
        disk = psutil.disk_usage(disk_path)
        disk_total, disk_free = float(disk.total), float(disk.free)
    except OSError:
        disk_total = disk_free = None
    return {
        "cpu_utilization_ratio": _cpu_delta.ratio(),
        "cpu_count": float(psutil.cpu_count() or 0),
        "memory_total_bytes": float(memory.total),
        "memory_available_bytes": float(memory.available),
        "load1": load1,
        "load5": load5,
        "load15": load15,
        "disk_total_bytes": disk_total,
        "disk_free_bytes": disk_free,
    }


def host_summary(prom: Any = None, fallback: Callable[[], dict] = psutil_host_summary) -> dict:
    """CPU, memory, load and disk of the host: node_exporter's figures through `prom` (a PromAPI,
    anything with scalar(expr)), each missing one from psutil. Never raises for a down Prometheus."""
    values: dict[str, float | None] = {key: None for key in HOST_QUERIES}
    detail = "Prometheus not configured"
    if prom is not None:
        detail = ""
        for key, expr in HOST_QUERIES.items():
            try:
                values[key] = prom.scalar(expr)
            except Exception as exc:  # MetricsUnavailable and friends: fall back, say why
                detail = str(exc)
                break
    sources = {key: "node_exporter" for key, value in values.items() if value is not None}
    if len(sources) < len(values):
        local = fallback()
        for key, value in values.items():
            if value is None:
                values[key] = local.get(key)
                sources[key] = "psutil"
        if not detail:
            detail = "node_exporter has no data for: " + ", ".join(k for k, s in sources.items() if s == "psutil")
    kinds = set(sources.values())
    summary: dict[str, Any] = dict(values)
    summary["source"] = kinds.pop() if len(kinds) == 1 else "mixed"
    summary["detail"] = detail
    total, available = values["memory_total_bytes"], values["memory_available_bytes"]
    summary["memory_used_ratio"] = 1 - available / total if total and available is not None else None
    return summary


class ProcessSampler:
    """RSS and CPU of each stack service, its children included; keeps psutil handles so CPU% has a baseline."""

    def __init__(self, process_factory: Callable[[int], Any] = psutil.Process):
        self._factory = process_factory
        self._handles: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _handle(self, pid: int) -> tuple[Any, bool]:
        """A cached psutil handle for pid and whether it is new (a reused pid gets a new handle)."""
        handle = self._handles.get(pid)
        if handle is not None and handle.is_running():
            return handle, False
        handle = self._factory(pid)
        handle.cpu_percent(None)  # baseline: psutil's first reading is meaningless
        self._handles[pid] = handle
        return handle, True

    def sample(self, pids: Mapping[str, int | None]) -> dict[str, dict]:
        """{service: {pid, status, rss_bytes, cpu_percent, cpu_seconds, processes}}; cpu_percent is of
        one CPU (like top) and None on a service's first sample."""
        with self._lock:
            seen: set[int] = set()
            result = {service: self._sample_one(pid, seen) for service, pid in pids.items()}
            for pid in set(self._handles) - seen:
                del self._handles[pid]
            return result

    def _sample_one(self, pid: int | None, seen: set[int]) -> dict:
        empty = {"pid": pid, "rss_bytes": None, "cpu_percent": None, "cpu_seconds": None, "processes": 0}
        if not pid:
            return {**empty, "status": "stopped"}
        try:
            main, new = self._handle(pid)
            tree = [main] + main.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return {**empty, "status": "gone"}
        except psutil.AccessDenied:
            return {**empty, "status": "access denied"}
        rss = cpu_percent = cpu_seconds = 0.0
        count = 0
        for proc in tree:
            try:
                handle, proc_new = self._handle(proc.pid) if proc is not main else (main, new)
                with handle.oneshot():
                    rss += handle.memory_info().rss
                    times = handle.cpu_times()
                    percent = handle.cpu_percent(None)
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue  # a child that exited between listing and reading
            seen.add(proc.pid)
            count += 1
            cpu_percent += 0.0 if proc_new else percent
            # A reaped child's time moves into its parent's children_* times: keeps the sum monotonic.
            cpu_seconds += times.user + times.system
            if proc is main:
                cpu_seconds += getattr(times, "children_user", 0.0) + getattr(times, "children_system", 0.0)
        return {
            "pid": pid,
            "status": "running",
            "rss_bytes": rss,
            "cpu_percent": None if new else cpu_percent,
            "cpu_seconds": cpu_seconds,
            "processes": count,
        }


class ProcessCollector(Collector):
    """prometheus-client collector of each stack service's memory and CPU, labelled {service}."""

    def __init__(self, pids_fn: Callable[[], Mapping[str, int | None]], sampler: ProcessSampler | None = None):
        self.pids_fn = pids_fn
        self.sampler = sampler or ProcessSampler()

    def collect(self):
        samples = self.sampler.sample(self.pids_fn())
        rss = GaugeMetricFamily("llmops_service_resident_memory_bytes",
                                "Resident memory of a stack service, its child processes included.", labels=["service"])
        cpu = CounterMetricFamily("llmops_service_cpu_seconds",
                                  "CPU time (user and system) of a stack service and its children.", labels=["service"])
        procs = GaugeMetricFamily("llmops_service_processes", "Processes in a stack service's tree.", labels=["service"])
        for service, sample in sorted(samples.items()):
            procs.add_metric([service], float(sample["processes"]))
            if sample["status"] == "running":
                rss.add_metric([service], sample["rss_bytes"])
                cpu.add_metric([service], sample["cpu_seconds"])
        yield from (rss, cpu, procs)
