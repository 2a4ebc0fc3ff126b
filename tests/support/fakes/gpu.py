"""A fake NVML module: pynvml's function names and error type over GPUs described as dicts."""
from __future__ import annotations

from types import SimpleNamespace

NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999


class NVMLError(Exception):
    """Like pynvml.NVMLError: carries the NVML return code in .value."""

    def __init__(self, value: int):
        super().__init__(f"NVML error {value}")
        self.value = value


def gpu(name="NVIDIA GeForce RTX 4090", uuid="GPU-0000", used=2 * 2**30, total=24 * 2**30, util=37,
        power_mw=123_456, limit_mw=450_000, temperature=61, processes=((4242, 1_500_000_000),)) -> dict:
    """One fake GPU; processes are (pid, used bytes or None)."""
    return {"name": name, "uuid": uuid, "used": used, "total": total, "util": util, "power_mw": power_mw,
            "limit_mw": limit_mw, "temperature": temperature, "processes": list(processes)}


class FakeNVML:
    """Module stand-in; `fail` maps a function name to the NVML code it raises (for every GPU, or
    {index: code} for one); `init_error` makes nvmlInit fail."""

    NVML_TEMPERATURE_GPU = 0
    NVMLError = NVMLError

    def __init__(self, gpus=(), fail=None, init_error=None, process_names=None):
        self.gpus = list(gpus)
        self.fail = dict(fail or {})
        self.init_error = init_error
        self.process_names = dict(process_names or {})
        self.calls: list[str] = []
        self.inits = self.shutdowns = 0

    def _check(self, fn: str, index: int | None = None) -> None:
        self.calls.append(fn)
        code = self.fail.get(fn)
        if isinstance(code, dict):
            code = code.get(index)
        if code is not None:
            raise NVMLError(code)

    def nvmlInit(self):
        self.calls.append("nvmlInit")
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        self._check("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        self._check("nvmlDeviceGetHandleByIndex", index)
        return index  # the handle is the index: opaque to the reader

    def nvmlDeviceGetName(self, handle):
        self._check("nvmlDeviceGetName", handle)
        return self.gpus[handle]["name"].encode()  # older pynvml returns bytes

    def nvmlDeviceGetUUID(self, handle):
        self._check("nvmlDeviceGetUUID", handle)
        return self.gpus[handle]["uuid"]

    def nvmlDeviceGetMemoryInfo(self, handle):
        self._check("nvmlDeviceGetMemoryInfo", handle)
        g = self.gpus[handle]
        return SimpleNamespace(used=g["used"], total=g["total"], free=g["total"] - g["used"])

    def nvmlDeviceGetUtilizationRates(self, handle):
        self._check("nvmlDeviceGetUtilizationRates", handle)
        return SimpleNamespace(gpu=self.gpus[handle]["util"], memory=10)

    def nvmlDeviceGetPowerUsage(self, handle):
        self._check("nvmlDeviceGetPowerUsage", handle)
        return self.gpus[handle]["power_mw"]

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        self._check("nvmlDeviceGetEnforcedPowerLimit", handle)
        return self.gpus[handle]["limit_mw"]

    def nvmlDeviceGetTemperature(self, handle, sensor):
        self._check("nvmlDeviceGetTemperature", handle)
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self.gpus[handle]["temperature"]

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        self._check("nvmlDeviceGetComputeRunningProcesses", handle)
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.gpus[handle]["processes"]]

    def nvmlSystemGetProcessName(self, pid):
        self._check("nvmlSystemGetProcessName", pid)
        if pid not in self.process_names:
            raise NVMLError(NVML_ERROR_UNKNOWN)
        return self.process_names[pid]
