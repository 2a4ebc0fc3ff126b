"""The queue's Redis as a stack service: run only when proxy workers share the queue, bound to 127.0.0.1, no disk;
its readiness is a PING over Redis's protocol (against the real redis-server)."""
from __future__ import annotations

import pytest

from llmops import health, settings
from llmops.proxy import config as proxyconf
from llmops.stack.services import all_services
from tests.support.helpers import free_port
from tests.support.redis import real_redis


def load(tmp_path, **environ):
    return settings.load(env_file=tmp_path / "x", environ=environ)


def test_redis_runs_before_the_proxy_only_when_several_workers_share_the_queue(tmp_path):
    names = [s.name for s in all_services(load(tmp_path, LITELLM_WORKERS="2"), "embedded")]
    assert names.index("redis") == names.index("litellm") - 1
    for environ in ({}, {"LITELLM_WORKERS": "2", "REDIS_URL": "redis://10.0.0.5:6379/0"},
                    {"LITELLM_WORKERS": "2", "QUEUE_ENABLED": "false"}):
        assert "redis" not in [s.name for s in all_services(load(tmp_path, **environ), "embedded")], environ


def test_the_stacks_redis_binds_127_0_0_1_and_writes_nothing_to_disk(tmp_path):
    s = load(tmp_path, LITELLM_WORKERS="3", REDIS_PORT="6390", BIND_HOST="0.0.0.0")
    (redis,) = [svc for svc in all_services(s, "embedded") if svc.name == "redis"]
    argv = redis.command
    assert argv[argv.index("--bind") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "6390"
    assert argv[argv.index("--save") + 1] == "" and argv[argv.index("--appendonly") + 1] == "no"
    assert redis.address == "127.0.0.1:6390"


def test_the_proxy_is_told_which_redis_holds_the_queue(tmp_path):
    url = proxyconf.queue_redis_url
    assert url(load(tmp_path)) == ""  # one worker: in the proxy
    assert url(load(tmp_path, LITELLM_WORKERS="2", REDIS_PORT="6390")) == "redis://127.0.0.1:6390/0"
    assert url(load(tmp_path, REDIS_URL="redis://10.0.0.5:6379/1")) == "redis://10.0.0.5:6379/1"
    s = load(tmp_path, LITELLM_WORKERS="2")
    assert proxyconf.queue_settings(s, proxyconf.render(s))["redis_url"] == "redis://127.0.0.1:6379/0"


@pytest.mark.integration
def test_the_readiness_check_pings_the_real_redis_and_reads_its_version(tmp_path):
    with real_redis(tmp_path) as url:
        base = "http://" + url.removeprefix("redis://").removesuffix("/0")
        result = health.probe_ready(None, base, [health.ReadyCheck(health.REDIS_PING)], "")
    assert result.ok and result.data["version"].startswith("7."), result
    down = health.probe_ready(None, base, [health.ReadyCheck(health.REDIS_PING)], "")
    assert not down.ok and down.error == "offline"
    closed = health.probe_redis(f"http://127.0.0.1:{free_port()}", timeout=1)
    assert closed.status == "offline"


def test_a_redis_port_that_accepts_and_never_answers_is_a_timeout_not_a_hang():
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens (the kernel accepts) and never replies
        port = silent.getsockname()[1]
        result = health.probe_redis(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    assert (result.status, result.error) == ("unhealthy", "timeout") and "no answer in 0.5 s" in result.detail
