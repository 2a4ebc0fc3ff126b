"""Scale-out wiring without processes: N backends become N services, N deployments and N scrape targets."""
from pathlib import Path

import pytest

from llmops import settings
from llmops.proxy import config as proxyconf
from llmops.render import prometheus_config as promconfig
from llmops.stack.services import backend_services, embedded_threads


def load(tmp_path: Path, **env: str) -> settings.Settings:
    environ = {"LITELLM_MASTER_KEY": "sk-test", "LLMOPS_STATE_DIR": str(tmp_path), **env}
    return settings.load(env_file=tmp_path / "absent.env", environ=environ)


@pytest.mark.parametrize("count, cpus, expected", [(1, 2, None), (2, 2, 1), (3, 2, 1), (3, 16, 5), (2, 8, 4)])
def test_embedded_threads_split_the_cores_between_backends(count, cpus, expected):
    assert embedded_threads(count, cpus) == expected


def test_backends_3_gives_three_supervised_backends_on_consecutive_ports(tmp_path):
    cfg = load(tmp_path, BACKENDS="3", OLLAMA_PORT="24434")
    services = backend_services(cfg, "embedded")
    assert [(s.name, s.port, s.kind) for s in services] == [
        ("ollama", 24434, "supervised"), ("ollama-2", 24435, "supervised"), ("ollama-3", 24436, "supervised")]
    for service in services:
        argv = service.command
        assert argv[argv.index("--port") + 1] == str(service.port)
        assert argv[argv.index("--threads") + 1] == str(embedded_threads(3))


def test_one_backend_keeps_llama_cpps_default_threads(tmp_path):
    (service,) = backend_services(load(tmp_path, BACKENDS="1", OLLAMA_PORT="24434"), "embedded")
    assert "--threads" not in service.command


def test_ollama_hosts_are_watched_not_started_and_fan_out_everywhere(tmp_path):
    hosts = "http://10.213.1.2:24434,http://10.213.2.2:24434,http://10.213.3.2:24434"
    cfg = load(tmp_path, OLLAMA_HOSTS=hosts, BACKENDS="5")  # OLLAMA_HOSTS wins over BACKENDS
    services = backend_services(cfg, "external")
    assert [(s.name, s.address, s.kind) for s in services] == [
        ("ollama", "10.213.1.2:24434", "external"), ("ollama-2", "10.213.2.2:24434", "external"),
        ("ollama-3", "10.213.3.2:24434", "external")]
    deployments = proxyconf.render(cfg)["model_list"]
    names = {d["model_name"] for d in deployments}
    assert "smollm2:135m" in names
    for name in names:  # one deployment per host for every model
        assert [d["litellm_params"]["api_base"] for d in deployments if d["model_name"] == name] == hosts.split(",")
    assert promconfig.targets(cfg)["ollama"] == [u.split("//")[1] for u in hosts.split(",")]
