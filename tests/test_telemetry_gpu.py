"""GPU telemetry against a fake NVML: one, two and zero GPUs, NVML failures, the Prometheus collector."""
from __future__ import annotations

import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llmops.telemetry.gpu import NO_GPU, GpuCollector, GpuReader, read_gpus
from tests.support.fakes.gpu import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_UNKNOWN,
    FakeNVML,
    gpu,
)


def scrape(reader: GpuReader) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of the collector's exposition text."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GpuCollector(reader))
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_one_gpu_is_read_with_units_converted():
    nvml = FakeNVML([gpu()], process_names={4242: b"/usr/local/bin/ollama"})
    snapshot = GpuReader(nvml).read()
    assert (snapshot.status, snapshot.detail) == ("ok", "1 GPU")
    [card] = snapshot.gpus
    assert card.name == "NVIDIA GeForce RTX 4090" and card.uuid == "GPU-0000"
    assert (card.memory_used_bytes, card.memory_total_bytes) == (2 * 2**30, 24 * 2**30)
    assert card.memory_used_ratio == pytest.approx(2 / 24)
    assert card.utilization_ratio == pytest.approx(0.37)
    assert card.power_watts == pytest.approx(123.456)
    assert card.power_limit_watts == pytest.approx(450.0)
    assert card.temperature_celsius == 61.0
    [proc] = card.processes
    assert (proc.pid, proc.name, proc.memory_bytes) == (4242, "ollama", 1_500_000_000)


def test_two_gpus_are_exported_with_one_series_each():
    nvml = FakeNVML(
        [gpu(name="NVIDIA A100", uuid="GPU-a", used=10, total=100, processes=[(1, 7)]),
         gpu(name="NVIDIA A100", uuid="GPU-b", used=90, total=100, processes=[])],
        process_names={1: "python3"},
    )
    metrics = scrape(GpuReader(nvml))
    assert metrics[("llmops_gpu_count", ())] == 2
    for index, used in (("0", 10), ("1", 90)):
        labels = (("gpu", index), ("name", "NVIDIA A100"))
        assert metrics[("llmops_gpu_memory_used_bytes", labels)] == used
        assert metrics[("llmops_gpu_memory_total_bytes", labels)] == 100
        assert metrics[("llmops_gpu_utilization_ratio", labels)] == pytest.approx(0.37)
        assert metrics[("llmops_gpu_power_watts", labels)] == pytest.approx(123.456)
        assert metrics[("llmops_gpu_power_limit_watts", labels)] == 450
        assert metrics[("llmops_gpu_temperature_celsius", labels)] == 61
    assert metrics[("llmops_gpu_info", (("gpu", "1"), ("name", "NVIDIA A100"), ("uuid", "GPU-b")))] == 1
    process_series = {key: value for key, value in metrics.items() if key[0] == "llmops_gpu_process_memory_bytes"}
    assert process_series == {
        ("llmops_gpu_process_memory_bytes", (("gpu", "0"), ("pid", "1"), ("process", "python3"))): 7
    }
    assert metrics[("llmops_gpu_collector_errors_total", ())] == 0


def test_zero_gpus_says_no_gpu_found_and_exports_a_zero_count():
    reader = GpuReader(FakeNVML([]))
    assert read_gpus(reader) == {"status": NO_GPU, "detail": "NVML found no GPU", "gpus": []}
    metrics = scrape(reader)
    assert metrics[("llmops_gpu_count", ())] == 0
    assert not [key for key in metrics if key[0] == "llmops_gpu_memory_used_bytes"]


@pytest.mark.parametrize("code", [NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_DRIVER_NOT_LOADED])
def test_no_driver_is_no_gpu_found_not_an_error(code):
    reader = GpuReader(FakeNVML([gpu()], init_error=code))
    snapshot = reader.read()
    assert snapshot.status == NO_GPU and snapshot.gpus == []
    assert "no NVIDIA driver" in snapshot.detail
    assert reader.errors == 0
    assert scrape(reader)[("llmops_gpu_count", ())] == 0


def test_other_init_failure_is_an_error_status_counted_and_retried():
    nvml = FakeNVML([gpu()], init_error=NVML_ERROR_NO_PERMISSION)
    reader = GpuReader(nvml)
    snapshot = reader.read()
    assert snapshot.status == "error" and snapshot.gpus == []
    assert "failed to initialise" in snapshot.detail
    assert reader.errors == 1
    nvml.init_error = None  # e.g. permissions fixed: the next read succeeds
    assert reader.read().status == "ok"


def test_missing_nvidia_ml_py_is_no_gpu_found(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    snapshot = GpuReader().read()
    assert (snapshot.status, snapshot.gpus) == (NO_GPU, [])
    assert "not installed" in snapshot.detail


def test_failed_call_leaves_only_that_field_none_and_counts_it():
    nvml = FakeNVML([gpu(), gpu(uuid="GPU-1")], fail={"nvmlDeviceGetPowerUsage": {0: NVML_ERROR_UNKNOWN}})
    reader = GpuReader(nvml)
    first, second = reader.read().gpus
    assert first.power_watts is None
    assert first.temperature_celsius == 61.0 and first.memory_used_bytes == 2 * 2**30
    assert second.power_watts == pytest.approx(123.456)
    assert reader.errors == 1
    metrics = scrape(reader)
    assert ("llmops_gpu_power_watts", (("gpu", "0"), ("name", "NVIDIA GeForce RTX 4090"))) not in metrics
    assert ("llmops_gpu_power_watts", (("gpu", "1"), ("name", "NVIDIA GeForce RTX 4090"))) in metrics
    assert metrics[("llmops_gpu_collector_errors_total", ())] == 2  # one per read: the scrape read again


def test_unsupported_field_is_none_but_not_an_error():
    reader = GpuReader(FakeNVML([gpu()], fail={"nvmlDeviceGetEnforcedPowerLimit": NVML_ERROR_NOT_SUPPORTED,
                                               "nvmlDeviceGetUtilizationRates": NVML_ERROR_NOT_SUPPORTED}))
    [card] = reader.read().gpus
    assert card.power_limit_watts is None and card.utilization_ratio is None
    assert card.power_watts == pytest.approx(123.456)
    assert reader.errors == 0


def test_lost_gpu_keeps_its_index_and_the_others_are_read():
    reader = GpuReader(FakeNVML([gpu(), gpu()], fail={"nvmlDeviceGetHandleByIndex": {1: NVML_ERROR_GPU_IS_LOST}}))
    snapshot = reader.read()
    assert snapshot.status == "ok"
    assert snapshot.gpus[0].name == "NVIDIA GeForce RTX 4090"
    assert snapshot.gpus[1].index == 1 and snapshot.gpus[1].name is None and snapshot.gpus[1].processes is None
    assert reader.errors == 1


def test_failed_device_count_is_an_error_with_no_gpus():
    reader = GpuReader(FakeNVML([gpu()], fail={"nvmlDeviceGetCount": NVML_ERROR_UNKNOWN}))
    snapshot = reader.read()
    assert (snapshot.status, snapshot.gpus) == ("error", [])
    assert scrape(reader)[("llmops_gpu_count", ())] == 0


def test_process_name_falls_back_to_psutil_then_unknown():
    names = {7: "llama-server"}
    nvml = FakeNVML([gpu(processes=[(7, 100), (8, 200), (9, None)])])  # NVML knows no name
    reader = GpuReader(nvml, process_name=names.get)
    [card] = reader.read().gpus
    assert [(p.pid, p.name, p.memory_bytes) for p in card.processes] == [
        (7, "llama-server", 100), (8, "unknown", 200), (9, "unknown", None)]
    metrics = scrape(reader)
    pids = {dict(labels)["pid"] for name, labels in metrics if name == "llmops_gpu_process_memory_bytes"}
    assert pids == {"7", "8"}  # a process whose memory NVML cannot tell is left out, not exported as 0
    assert reader.errors == 0


def test_process_listing_failure_gives_none_not_an_empty_list():
    reader = GpuReader(FakeNVML([gpu()], fail={"nvmlDeviceGetComputeRunningProcesses": NVML_ERROR_NO_PERMISSION}))
    [card] = reader.read().gpus
    assert card.processes is None
    assert reader.errors == 1


def test_unexpected_exception_becomes_an_error_status():
    nvml = FakeNVML([gpu()])
    nvml.nvmlDeviceGetMemoryInfo = lambda handle: (_ for _ in ()).throw(RuntimeError("driver bug"))
    reader = GpuReader(nvml)
    snapshot = reader.read()
    assert snapshot.status == "error" and "driver bug" in snapshot.detail
    assert scrape(reader)[("llmops_gpu_count", ())] == 0


def test_nvml_is_initialised_once_and_shut_down_on_close():
    nvml = FakeNVML([gpu()])
    reader = GpuReader(nvml)
    reader.read()
    reader.read()
    assert nvml.inits == 1
    reader.close()
    assert nvml.shutdowns == 1


def test_as_dict_is_json_ready_for_the_dashboard():
    result = read_gpus(GpuReader(FakeNVML([gpu(used=6, total=8)], process_names={4242: "ollama"})))
    assert result["status"] == "ok"
    [card] = result["gpus"]
    assert card["memory_used_ratio"] == 0.75
    assert card["processes"] == [{"pid": 4242, "name": "ollama", "memory_bytes": 1_500_000_000}]


def test_real_nvml_on_this_machine_never_raises():
    snapshot = GpuReader().read()  # the real pynvml: a GPU machine says ok, any other "no GPU found"
    assert snapshot.status in ("ok", NO_GPU), snapshot.detail
    assert (snapshot.status == "ok") == bool(snapshot.gpus)
