"""NVIDIA GPU telemetry through NVML (nvidia-ml-py): plain readings and a Prometheus collector."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

NO_GPU = "no GPU found"
# NVML error codes that mean "this machine has no usable NVIDIA driver": a status, not a fault.
_NO_DRIVER_CODES = {9, 12}  # NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_LIBRARY_NOT_FOUND
_NOT_SUPPORTED = 3  # NVML_ERROR_NOT_SUPPORTED: a field this GPU does not report, not an error
_TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU


@dataclass(frozen=True)
class GpuProcess:
    """A process holding memory on a GPU."""

    pid: int
    name: str
    memory_bytes: int | None


@dataclass(frozen=True)
class Gpu:
    """One GPU's reading; a field NVML could not read is None."""

    index: int
    name: str | None = None
    uuid: str | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    utilization_ratio: float | None = None
    power_watts: float | None = None
    power_limit_watts: float | None = None
    temperature_celsius: float | None = None
    processes: list[GpuProcess] | None = None

    @property
    def memory_used_ratio(self) -> float | None:
        if self.memory_used_bytes is None or not self.memory_total_bytes:
            return None
        return self.memory_used_bytes / self.memory_total_bytes


@dataclass(frozen=True)
class GpuSnapshot:
    """Every GPU at one instant; status is "ok", "no GPU found" or "error" (detail says why)."""

    status: str
    detail: str
    gpus: list[Gpu] = field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON-ready form for the dashboard."""
        gpus = []
        for gpu in self.gpus:
            entry = asdict(gpu)
            entry["memory_used_ratio"] = gpu.memory_used_ratio
            gpus.append(entry)
        return {"status": self.status, "detail": self.detail, "gpus": gpus}


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _psutil_name(pid: int) -> str | None:
    try:
        return psutil.Process(pid).name()
    except (psutil.Error, OSError):
        return None


class GpuReader:
    """Reads every GPU through an NVML module (pynvml by default; tests pass a fake with the same functions)."""

    def __init__(self, nvml: Any = None, process_name: Callable[[int], str | None] = _psutil_name):
        self._nvml = nvml
        self._process_name = process_name
        self._lock = threading.Lock()
        self._initialised = False
        self.errors = 0  # failed NVML calls since start (unsupported fields and a missing driver excluded)

    def _module(self) -> Any:
        if self._nvml is None:
            import pynvml  # imported late: a dashboard without nvidia-ml-py still starts

            self._nvml = pynvml
        return self._nvml

    def _start(self) -> GpuSnapshot | None:
        """Initialise NVML once; a snapshot saying why when it cannot be."""
        if self._initialised:
            return None
        try:
            nvml = self._module()
        except ImportError:
            return GpuSnapshot(NO_GPU, "nvidia-ml-py (pynvml) is not installed")
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) in _NO_DRIVER_CODES:
                return GpuSnapshot(NO_GPU, f"no NVIDIA driver: {exc}")
            self.errors += 1
            return GpuSnapshot("error", f"NVML failed to initialise: {exc}")
        self._initialised = True
        return None

    def _call(self, fn: str, *args: Any) -> Any:
        """One NVML call; None when it fails (counted) or the GPU does not support it (not counted)."""
        nvml = self._nvml
        try:
            return getattr(nvml, fn)(*args)
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) != _NOT_SUPPORTED:
                self.errors += 1
                log.debug("NVML %s failed: %s", fn, exc)
            return None

    def read(self) -> GpuSnapshot:
        """Every GPU now; never raises."""
        with self._lock:
            try:
                failed = self._start()
                if failed is not None:
                    return failed
                return self._read_all()
            except Exception as exc:  # a bug here must not take the dashboard's page or /metrics down
                self.errors += 1
                log.exception("GPU telemetry failed")
                return GpuSnapshot("error", f"GPU telemetry failed: {exc!r}")

    def _read_all(self) -> GpuSnapshot:
        count = self._call("nvmlDeviceGetCount")
        if count is None:
            return GpuSnapshot("error", "NVML could not count the GPUs")
        if count == 0:
            return GpuSnapshot(NO_GPU, "NVML found no GPU")
        gpus = [self._read_one(index) for index in range(count)]
        return GpuSnapshot("ok", f"{count} GPU" + ("s" if count > 1 else ""), gpus)

    def _read_one(self, index: int) -> Gpu:
        handle = self._call("nvmlDeviceGetHandleByIndex", index)
        if handle is None:
            return Gpu(index=index)
        name = self._call("nvmlDeviceGetName", handle)
        uuid = self._call("nvmlDeviceGetUUID", handle) if hasattr(self._nvml, "nvmlDeviceGetUUID") else None
        memory = self._call("nvmlDeviceGetMemoryInfo", handle)
        rates = self._call("nvmlDeviceGetUtilizationRates", handle)
        power_mw = self._call("nvmlDeviceGetPowerUsage", handle)
        limit_mw = self._call("nvmlDeviceGetEnforcedPowerLimit", handle)
        temperature = self._call(
            "nvmlDeviceGetTemperature", handle, getattr(self._nvml, "NVML_TEMPERATURE_GPU", _TEMPERATURE_GPU)
        )
        return Gpu(
            index=index,
            name=None if name is None else _text(name),
            uuid=None if uuid is None else _text(uuid),
            memory_used_bytes=None if memory is None else int(memory.used),
            memory_total_bytes=None if memory is None else int(memory.total),
            utilization_ratio=None if rates is None else rates.gpu / 100.0,
            power_watts=None if power_mw is None else power_mw / 1000.0,
            power_limit_watts=None if limit_mw is None else limit_mw / 1000.0,
            temperature_celsius=None if temperature is None else float(temperature),
            processes=self._processes(handle),
        )

    def _processes(self, handle: Any) -> list[GpuProcess] | None:
        """Compute and graphics processes, one entry per pid; None when NVML cannot list them."""
        compute = self._call("nvmlDeviceGetComputeRunningProcesses", handle)
        graphics = []
        if hasattr(self._nvml, "nvmlDeviceGetGraphicsRunningProcesses"):
            graphics = self._call("nvmlDeviceGetGraphicsRunningProcesses", handle) or []
        if compute is None and not graphics:
            return None
        by_pid: dict[int, GpuProcess] = {}
        for proc in list(compute or []) + list(graphics):
            pid = int(proc.pid)
            used = getattr(proc, "usedGpuMemory", None)  # None where the driver cannot tell (e.g. WDDM)
            if pid in by_pid and by_pid[pid].memory_bytes is not None:
                used = max(used or 0, by_pid[pid].memory_bytes)
            by_pid[pid] = GpuProcess(pid=pid, name=self._name_of(pid), memory_bytes=None if used is None else int(used))
        return sorted(by_pid.values(), key=lambda p: p.pid)

    def _name_of(self, pid: int) -> str:
        # NVML reports pids as the driver sees them; inside a container psutil may know another
        # process under the same pid, so the driver's name comes first.
        if hasattr(self._nvml, "nvmlSystemGetProcessName"):
            try:
                name = self._nvml.nvmlSystemGetProcessName(pid)
                if name:
                    return os.path.basename(_text(name))
            except self._nvml.NVMLError:
                pass
        return self._process_name(pid) or "unknown"

    def close(self) -> None:
        """Release NVML (it is reference counted by the driver)."""
        with self._lock:
            if self._initialised:
                self._initialised = False
                try:
                    self._nvml.nvmlShutdown()
                except self._nvml.NVMLError:
                    pass


_default_reader: GpuReader | None = None
_default_lock = threading.Lock()


def default_reader() -> GpuReader:
    """The process-wide reader, so NVML is initialised once."""
    global _default_reader
    with _default_lock:
        if _default_reader is None:
            _default_reader = GpuReader()
        return _default_reader


def read_gpus(reader: GpuReader | None = None) -> dict:
    """{"status": "ok"|"no GPU found"|"error", "detail": str, "gpus": [dict]} for the dashboard."""
    return (reader or default_reader()).read().as_dict()


# (metric name, help, Gpu attribute) of the per-GPU gauges, labelled {gpu, name}.
_GAUGES = (
    ("llmops_gpu_memory_used_bytes", "GPU memory in use.", "memory_used_bytes"),
    ("llmops_gpu_memory_total_bytes", "GPU memory installed.", "memory_total_bytes"),
    ("llmops_gpu_utilization_ratio", "Share of the last sample period a kernel ran on the GPU (0-1).",
     "utilization_ratio"),
    ("llmops_gpu_power_watts", "GPU power draw.", "power_watts"),
    ("llmops_gpu_power_limit_watts", "GPU enforced power limit.", "power_limit_watts"),
    ("llmops_gpu_temperature_celsius", "GPU core temperature.", "temperature_celsius"),
)


class GpuCollector(Collector):
    """prometheus-client collector: reads the GPUs on each scrape; unreadable fields are left out."""

    def __init__(self, reader: GpuReader | None = None):
        self.reader = reader or default_reader()

    def collect(self):
        started = time.perf_counter()
        snapshot = self.reader.read()
        yield GaugeMetricFamily("llmops_gpu_count", "NVIDIA GPUs NVML sees (0: no GPU or no driver).",
                                value=float(len(snapshot.gpus)))
        info = GaugeMetricFamily("llmops_gpu_info", "Identity of each GPU; always 1.", labels=["gpu", "name", "uuid"])
        gauges = [GaugeMetricFamily(name, help_text, labels=["gpu", "name"]) for name, help_text, _ in _GAUGES]
        processes = GaugeMetricFamily("llmops_gpu_process_memory_bytes", "GPU memory held by a process.",
                                      labels=["gpu", "pid", "process"])
        for gpu in snapshot.gpus:
            gpu_label, name_label = str(gpu.index), gpu.name or "unknown"
            info.add_metric([gpu_label, name_label, gpu.uuid or ""], 1.0)
            for family, (_, _, attribute) in zip(gauges, _GAUGES, strict=True):
                value = getattr(gpu, attribute)
                if value is not None:
                    family.add_metric([gpu_label, name_label], float(value))
            for proc in gpu.processes or []:
                if proc.memory_bytes is not None:
                    processes.add_metric([gpu_label, str(proc.pid), proc.name], float(proc.memory_bytes))
        yield info
        yield from gauges
        yield processes
        yield CounterMetricFamily("llmops_gpu_collector_errors", "NVML calls that failed since start.",
                                  value=float(self.reader.errors))
        yield GaugeMetricFamily("llmops_gpu_collection_duration_seconds", "Time the last GPU reading took.",
                                value=time.perf_counter() - started)
