"""The dashboard's Host & GPU view: the /api/host document and the pids of the stack's services."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import psutil

from ..telemetry.gpu import GpuReader, read_gpus
from ..telemetry.host import ProcessSampler, host_summary

log = logging.getLogger(__name__)

PidsFn = Callable[[], Mapping[str, int | None]]


def supervisor_pids(settings: Any) -> PidsFn:
    """A pids function over the stack's supervisord: {program: pid or None when not running}.

    The dashboard's own pid stands in when it is not supervised (run by hand), so the table is never
    empty while the page is being served.
    """
    from ..stack.supervisor import Supervisor

    supervisor = Supervisor(settings)

    def pids() -> dict[str, int | None]:
        result: dict[str, int | None] = {name: info.pid or None for name, info in supervisor.all_info().items()}
        if not result.get("dashboard"):
            result["dashboard"] = os.getpid()
        return result

    return pids


def safe_pids(pids_fn: PidsFn) -> PidsFn:
    """pids_fn that answers {} instead of raising: a broken supervisor must not break /metrics or the page."""

    def pids() -> Mapping[str, int | None]:
        try:
            return dict(pids_fn())
        except Exception:
            log.exception("could not list the stack's pids")
            return {}

    return pids


def loaded_models(status: Mapping) -> list[dict]:
    """Models loaded on each backend, from the monitor's ollama component (Ollama's /api/ps)."""
    backends = ((status.get("components") or {}).get("ollama") or {}).get("backends") or []
    models = []
    for backend in backends:
        for entry in backend.get("loaded") or []:
            size, vram = entry.get("size") or 0, entry.get("size_vram") or 0
            models.append({
                "backend": backend.get("backend"),
                "name": entry.get("name"),
                "size": size,
                "size_vram": vram,
                "vram_ratio": vram / size if size else None,  # 1.0: fully on the GPU; 0: on the CPU
                "expires_at": entry.get("expires_at"),
            })
    return models


def _owner(pid: int, services: Mapping[int, str]) -> str | None:
    """The stack service whose process tree holds pid (Ollama's runners are children of `ollama serve`)."""
    if pid in services:
        return services[pid]
    try:
        # NVML reports pids as the driver sees them; in a container these may not be ours, so a
        # miss is simply "not a stack process".
        for parent in psutil.Process(pid).parents():
            if parent.pid in services:
                return services[parent.pid]
    except (psutil.Error, OSError):
        pass
    return None


class HostView:
    """Builds the /api/host document; keeps one ProcessSampler so CPU% is measured between calls.

    Once started, a background thread samples the stack's processes every sample_every seconds, so
    the first page a user opens already shows each process's CPU% (psutil needs two readings).
    """

    def __init__(self, pids_fn: PidsFn, status_fn: Callable[[], Mapping], prom: Any = None,
                 gpu_reader: GpuReader | None = None, sampler: ProcessSampler | None = None,
                 host_fn: Callable[[Any], dict] = host_summary, sample_every: float = 2.0):
        self.pids_fn = safe_pids(pids_fn)
        self.status_fn = status_fn
        self.prom = prom
        self.gpu_reader = gpu_reader
        self.sampler = sampler or ProcessSampler()
        self.host_fn = host_fn
        self.sample_every = sample_every
        self._latest: tuple[float, dict] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Sample now (the CPU baseline), again after half a second, then every sample_every seconds."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="host-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background sampling (a sample in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def _loop(self) -> None:
        wait = min(0.5, self.sample_every)
        while not self._stop.is_set():
            try:
                self._latest = (time.monotonic(), self.sampler.sample(self.pids_fn()))
            except Exception:  # a failed sample must not end the thread; the page samples itself then
                log.exception("host view: background process sample failed")
            self._stop.wait(wait)
            wait = self.sample_every

    def processes(self, pids: Mapping[str, int | None]) -> dict:
        """The background sample while it is fresh, else a sample taken now."""
        latest = self._latest
        if latest is not None and time.monotonic() - latest[0] < 3 * self.sample_every:
            return latest[1]
        return self.sampler.sample(pids)

    def document(self) -> dict:
        """{"host", "processes", "gpu", "errors"}; a part that fails is reported in errors, never raised."""
        errors: dict[str, str] = {}
        pids = self.pids_fn()
        host = self._part("host", lambda: self.host_fn(self.prom), errors, {})
        processes = self._part("processes", lambda: self.processes(pids), errors, {})
        gpu = self._part("gpu", lambda: read_gpus(self.gpu_reader), errors,
                         {"status": "error", "detail": "GPU telemetry failed", "gpus": []})
        gpu["models"] = self._part("models", lambda: loaded_models(self.status_fn()), errors, [])
        services = {pid: name for name, pid in pids.items() if pid}
        for entry in gpu.get("gpus") or []:
            for proc in entry.get("processes") or []:
                proc["service"] = _owner(proc["pid"], services)
        return {"host": host, "processes": processes, "gpu": gpu, "errors": errors}

    @staticmethod
    def _part(name: str, fn: Callable[[], Any], errors: dict[str, str], empty: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # one missing part must not cost the others
            log.exception("host view: %s failed", name)
            errors[name] = f"{type(exc).__name__}: {exc}"
            return empty
