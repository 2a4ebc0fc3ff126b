"""Host and GPU telemetry: NVML readings, stack process usage, host summary from node_exporter."""
from .gpu import GpuCollector, GpuReader, read_gpus
from .host import HOST_QUERIES, ProcessCollector, ProcessSampler, host_summary

__all__ = [
    "GpuCollector",
    "GpuReader",
    "read_gpus",
    "HOST_QUERIES",
    "ProcessCollector",
    "ProcessSampler",
    "host_summary",
]
