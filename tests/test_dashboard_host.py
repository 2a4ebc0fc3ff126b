"""The dashboard's Host & GPU view: /api/host over fake NVML and fake pids, and the collectors on /metrics."""
from __future__ import annotations

import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmops.dashboard import create_app
from llmops.telemetry.gpu import GpuReader
from tests.support.fakes.dashboard import BACKEND, PROM, FakeHTTP, FakeResponse, healthy_stack, make_settings, without
from tests.support.fakes.gpu import NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_UNKNOWN, FakeNVML, gpu
from tests.support.helpers import wait_for

NOW = 1_700_000_000.0
ME = os.getpid()


def build(routes=None, nvml=None, pids=None, **config):
    """An app over a fake stack, fake NVML and fake pids, the checks run once by hand."""
    app = create_app({
        "SETTINGS": make_settings(), "HTTP_SESSION": FakeHTTP(healthy_stack() if routes is None else routes),
        "START_MONITOR": False, "CLOCK": lambda: NOW, "CACHE_SECONDS": 0, "HOST_CACHE_SECONDS": 0,
        "GPU_READER": GpuReader(FakeNVML() if nvml is None else nvml, process_name=lambda pid: None),
        "SERVICE_PIDS": (lambda: {"dashboard": ME}) if pids is None else pids, **config,
    })
    app.extensions["llmops"]["monitor"].run_once()
    return app


def host(app) -> dict:
    response = app.test_client().get("/api/host")
    assert response.status_code == 200
    return response.get_json()


def metrics(app) -> dict:
    """{(name, labels as tuple of pairs): value} of the app's /metrics."""
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_no_gpu_says_so_and_still_lists_loaded_models():
    body = host(build(nvml=FakeNVML(gpus=[])))
    assert set(body) == {"host", "processes", "gpu", "errors"} and body["errors"] == {}
    assert body["gpu"]["status"] == "no GPU found" and body["gpu"]["gpus"] == []
    (model,) = body["gpu"]["models"]
    assert model == {"backend": "127.0.0.1:18434", "name": "smollm2:135m", "size": 210000000, "size_vram": 0,
                     "vram_ratio": 0.0, "expires_at": "2030-01-01T00:05:00Z"}


def test_missing_driver_is_no_gpu_not_an_error():
    body = host(build(nvml=FakeNVML(gpus=[gpu()], init_error=NVML_ERROR_DRIVER_NOT_LOADED)))
    assert body["gpu"]["status"] == "no GPU found" and "driver" in body["gpu"]["detail"]


def test_one_gpu_has_every_field_and_names_the_service_holding_memory():
    nvml = FakeNVML(gpus=[gpu(processes=((ME, 1_500_000_000), (4242, None)))], process_names={ME: "/usr/bin/ollama"})
    body = host(build(nvml=nvml, pids=lambda: {"ollama": ME}))
    assert body["gpu"]["status"] == "ok"
    (card,) = body["gpu"]["gpus"]
    assert card["name"] == "NVIDIA GeForce RTX 4090"
    assert card["memory_used_bytes"] == 2 * 2**30 and card["memory_total_bytes"] == 24 * 2**30
    assert card["memory_used_ratio"] == pytest.approx(2 / 24)
    assert card["utilization_ratio"] == pytest.approx(0.37)
    assert card["power_watts"] == pytest.approx(123.456) and card["power_limit_watts"] == pytest.approx(450.0)
    assert card["temperature_celsius"] == 61.0
    assert {p["pid"]: p for p in card["processes"]} == {
        4242: {"pid": 4242, "name": "unknown", "memory_bytes": None, "service": None},
        ME: {"pid": ME, "name": "ollama", "memory_bytes": 1_500_000_000, "service": "ollama"},
    }


def test_two_gpus_are_listed_in_order():
    nvml = FakeNVML(gpus=[gpu(name="A100", uuid="GPU-a"), gpu(name="L4", uuid="GPU-b", used=0, processes=())])
    body = host(build(nvml=nvml))
    assert [(g["index"], g["name"]) for g in body["gpu"]["gpus"]] == [(0, "A100"), (1, "L4")]
    assert body["gpu"]["gpus"][1]["processes"] == [] and body["gpu"]["detail"] == "2 GPUs"


def test_nvml_error_is_a_status_not_a_500():
    body = host(build(nvml=FakeNVML(gpus=[gpu()], init_error=NVML_ERROR_UNKNOWN)))
    assert body["gpu"]["status"] == "error" and "initialise" in body["gpu"]["detail"]
    assert body["errors"] == {}


def test_one_unreadable_field_leaves_the_rest():
    nvml = FakeNVML(gpus=[gpu(), gpu(name="L4")], fail={"nvmlDeviceGetPowerUsage": {1: NVML_ERROR_UNKNOWN}})
    gpus = host(build(nvml=nvml))["gpu"]["gpus"]
    assert gpus[0]["power_watts"] == pytest.approx(123.456)
    assert gpus[1]["power_watts"] is None and gpus[1]["name"] == "L4"


def test_processes_come_from_the_pids_function():
    body = host(build(pids=lambda: {"dashboard": ME, "litellm": None}))
    mine = body["processes"]["dashboard"]
    assert mine["pid"] == ME and mine["status"] == "running"
    assert mine["rss_bytes"] > 10 * 2**20  # this Python process with Flask loaded
    assert mine["cpu_percent"] is None  # first sample: no baseline yet
    assert body["processes"]["litellm"]["status"] == "stopped"


def test_cpu_percent_has_a_baseline_from_the_second_call():
    app = build(pids=lambda: {"dashboard": ME})
    host(app)
    assert host(app)["processes"]["dashboard"]["cpu_percent"] >= 0.0


def test_answer_is_cached_for_a_couple_of_seconds():
    calls = []

    def pids():
        calls.append(1)
        return {"dashboard": ME}

    app = build(pids=pids, HOST_CACHE_SECONDS=2.0)
    calls.clear()
    host(app)
    host(app)
    assert len(calls) == 1


def test_host_summary_reads_prometheus_and_falls_back_to_psutil():
    figures = host(build())["host"]
    assert figures["source"] == "node_exporter" and figures["cpu_count"] == 8
    assert figures["memory_used_ratio"] == pytest.approx(10 / 16) and figures["load1"] == 1.5
    assert figures["disk_free_bytes"] == 40 * 2**30
    fallback = host(build(routes=without(healthy_stack(), PROM)))["host"]
    assert fallback["source"] == "psutil" and fallback["memory_total_bytes"] > 0 and fallback["detail"]


def test_a_broken_pids_function_costs_only_the_process_table():
    def broken():
        raise OSError("supervisor socket gone")

    app = build(pids=broken, nvml=FakeNVML(gpus=[gpu()]))
    body = host(app)
    assert body["processes"] == {} and body["gpu"]["status"] == "ok"
    assert ("llmops_gpu_count", ()) in metrics(app)


def test_nothing_known_at_all_is_still_a_200():
    body = host(build(routes={}, nvml=FakeNVML(init_error=NVML_ERROR_UNKNOWN), pids=lambda: {}))
    assert body["gpu"]["models"] == [] and body["processes"] == {} and body["host"]["source"] == "psutil"


def test_vram_ratio_of_a_model_on_the_gpu():
    loaded = {"name": "smollm2:135m", "size": 210000000, "size_vram": 210000000, "expires_at": None}
    routes = {**healthy_stack(), f"GET {BACKEND}/api/ps": FakeResponse(200, {"models": [loaded]})}
    (model,) = host(build(routes=routes))["gpu"]["models"]
    assert model["size_vram"] == 210000000 and model["vram_ratio"] == 1.0


def test_metrics_export_gpu_and_service_families():
    nvml = FakeNVML(gpus=[gpu(), gpu(name="L4", uuid="GPU-b")])
    samples = metrics(build(nvml=nvml, pids=lambda: {"dashboard": ME, "litellm": None}))
    assert samples[("llmops_gpu_count", ())] == 2.0
    assert samples[("llmops_gpu_memory_total_bytes", (("gpu", "1"), ("name", "L4")))] == 24 * 2**30
    assert samples[("llmops_gpu_temperature_celsius", (("gpu", "0"), ("name", "NVIDIA GeForce RTX 4090")))] == 61.0
    assert samples[("llmops_service_resident_memory_bytes", (("service", "dashboard"),))] > 10 * 2**20
    assert samples[("llmops_service_processes", (("service", "litellm"),))] == 0.0
    assert ("llmops_service_resident_memory_bytes", (("service", "litellm"),)) not in samples
    assert samples[("llmops_component_up", (("component", "proxy"),))] == 1.0  # the probe metrics are still there


def test_metrics_with_no_gpu_say_zero():
    samples = metrics(build(nvml=FakeNVML(init_error=NVML_ERROR_DRIVER_NOT_LOADED)))
    assert samples[("llmops_gpu_count", ())] == 0.0
    assert not [key for key in samples if key[0] == "llmops_gpu_memory_used_bytes"]


def test_a_reader_that_raises_leaves_the_rest_of_metrics_and_of_the_page():
    class Broken:
        errors = 0

        def read(self):
            raise RuntimeError("a bug, not a driver status")

    app = build(GPU_READER=Broken())
    response = app.test_client().get("/metrics")
    assert response.status_code == 200 and b"llmops_component_up" in response.data
    assert b"llmops_gpu_count" not in response.data
    body = host(app)
    assert body["gpu"]["status"] == "error" and "RuntimeError" in body["errors"]["gpu"]
    assert body["processes"]["dashboard"]["status"] == "running"


def test_an_nvml_bug_is_an_error_status():
    class Exploding(FakeNVML):
        def nvmlDeviceGetCount(self):
            raise RuntimeError("not an NVMLError")

    app = build(nvml=Exploding())
    assert host(app)["gpu"]["status"] == "error"
    assert metrics(app)[("llmops_gpu_count", ())] == 0.0


def test_default_reader_is_shared_and_nvml_initialised_once():
    nvml = FakeNVML(gpus=[gpu()])
    app = build(nvml=nvml)
    client = app.test_client()
    for _ in range(3):
        client.get("/metrics")
        client.get("/api/host")
    assert nvml.inits == 1



def test_first_page_load_shows_cpu_percent_sampled_in_the_background():
    app = build(pids=lambda: {"dashboard": ME}, HOST_SAMPLE_SECONDS=0.5)
    view = app.extensions["llmops"]["host_view"]
    view.start()
    thread = view._thread
    try:
        # The background thread's second sample (half a second after its baseline) carries CPU%.
        wait_for(lambda: view._latest and view._latest[1]["dashboard"]["cpu_percent"] is not None, 10,
                 "the background sampler's first CPU%")
        first = host(app)["processes"]["dashboard"]  # the page's first request
        assert first["status"] == "running" and first["cpu_percent"] >= 0.0
    finally:
        view.stop()
    assert not thread.is_alive()  # stop() ends the sampling thread
