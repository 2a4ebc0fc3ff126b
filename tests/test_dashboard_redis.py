"""The dashboard's Redis row: judged (PING, version) when the stack's queue shares its state through Redis, else
shown as not used and never as down. Against the real redis-server; the rest of the stack is the fake one."""
from __future__ import annotations

import os
import socket

import pytest

from llmops import health
from llmops.dashboard import create_app
from tests.support.browser import open_page, serve
from tests.support.fakes.dashboard import FakeHTTP, healthy_stack, make_settings
from tests.support.helpers import free_port
from tests.support.redis import real_redis


def status(**settings):
    app = create_app({"SETTINGS": make_settings(**settings), "HTTP_SESSION": FakeHTTP(healthy_stack()),
                      "START_MONITOR": False, "CACHE_SECONDS": 0, "SERVICE_PIDS": lambda: {"dashboard": os.getpid()}})
    for _ in range(2):
        app.extensions["llmops"]["monitor"].run_once()
    client = app.test_client()
    return client.get("/api/status").get_json(), client.get("/metrics").get_data(as_text=True)


def port_of(url: str) -> str:
    return url.rsplit(":", 1)[1].split("/")[0]


def command(url: str, *words: str) -> bytes:
    """One command over Redis's protocol to the server at url (redis://127.0.0.1:PORT/0)."""
    with socket.create_connection(("127.0.0.1", int(port_of(url))), timeout=5) as sock:
        sock.sendall(f"*{len(words)}\r\n".encode() + b"".join(f"${len(w)}\r\n{w}\r\n".encode() for w in words))
        return sock.recv(256)


@pytest.mark.parametrize("settings, why", [
    ({}, "one proxy worker (LITELLM_WORKERS=1) and no REDIS_URL"),
    ({"QUEUE_ENABLED": "false", "LITELLM_WORKERS": "2"}, "QUEUE_ENABLED=false"),
    ({"QUEUE_ENABLED": "false", "REDIS_URL": "redis://127.0.0.1:1/0"}, "QUEUE_ENABLED=false"),
])
def test_redis_not_needed_is_not_used_and_not_judged(settings, why):
    doc, metrics = status(**settings)
    redis = doc["components"]["redis"]
    assert (redis["enabled"], redis["needed"], redis["status"]) == (False, False, "offline")
    assert redis["detail"].startswith("not used: ") and why in redis["detail"]
    assert doc["overall"] == "healthy", doc["reason"]
    assert 'component_up{component="redis"}' not in metrics


def test_redis_url_is_pinged_and_shows_its_version(tmp_path):
    with real_redis(tmp_path) as url:
        doc, metrics = status(REDIS_URL=url)
    redis = doc["components"]["redis"]
    assert (redis["enabled"], redis["status"]) == (True, "healthy")
    assert redis["version"] and redis["version"][0].isdigit() and redis["version"] in redis["detail"]
    assert redis["role"] == f"REDIS_URL at 127.0.0.1:{port_of(url)}: the proxies share the queue through it"
    assert doc["overall"] == "healthy", doc["reason"]
    assert 'llmops_component_up{component="redis"} 1.0' in metrics


def test_the_stacks_own_redis_is_judged_when_several_workers_share_the_queue(tmp_path):
    with real_redis(tmp_path) as url:
        doc, _ = status(LITELLM_WORKERS="2", REDIS_PORT=port_of(url))
    redis = doc["components"]["redis"]
    assert redis["status"] == "healthy" and redis["role"].startswith(f"the stack's own at 127.0.0.1:{port_of(url)}")


def test_redis_down_when_needed_degrades_the_stack_and_says_requests_pass_unqueued():
    doc, metrics = status(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    redis = doc["components"]["redis"]
    assert (redis["enabled"], redis["status"]) == (True, "offline") and "cannot connect" in redis["detail"]
    assert doc["overall"] == "degraded" and "Redis is down" in doc["reason"] and "unqueued" in doc["reason"]
    assert doc["components"]["proxy"]["status"] == "healthy"
    assert 'llmops_component_up{component="redis"} 0.0' in metrics


def test_a_redis_url_with_a_password_logs_in_and_never_shows_the_password(tmp_path):
    with real_redis(tmp_path) as url:
        assert command(url, "CONFIG", "SET", "requirepass", "s3cret-word").startswith(b"+OK")
        host = url.removeprefix("redis://")
        good = health.probe_redis(f"redis://:s3cret-word@{host}", timeout=3)
        bare = health.probe_redis(url, timeout=3)
        wrong = health.probe_redis(f"redis://default:wrong-word@{host}", timeout=3)
        doc, _ = status(REDIS_URL=f"redis://:s3cret-word@{host}")
    assert good.ok and good.data["version"]
    assert not bare.ok and "NOAUTH" in bare.detail
    assert not wrong.ok and wrong.detail.startswith("AUTH refused") and "wrong-word" not in wrong.detail
    assert doc["components"]["redis"]["status"] == "healthy"
    assert "s3cret-word" not in str(doc)


@pytest.mark.browser
def test_the_redis_card_shows_not_used_or_its_health_and_version(browser, tmp_path):
    base, server = serve(healthy_stack())
    try:
        page, errors = open_page(browser, base)
        card = page.locator('.card[data-component="redis"]')
        card.wait_for(timeout=10_000)
        assert card.locator(".badge").inner_text() == "not used" and "off" in card.get_attribute("class")
        assert "one proxy worker" in card.inner_text()
        assert page.locator("#overall-word").text_content() == "healthy"
        assert errors == []
        page.close()
    finally:
        server.close()
    with real_redis(tmp_path) as url:
        base, server = serve(healthy_stack(), settings=make_settings(REDIS_URL=url))
        try:
            page, errors = open_page(browser, base)
            page.wait_for_selector('.card[data-component="redis"].healthy', timeout=10_000)
            text = page.locator('.card[data-component="redis"]').inner_text()
            assert "healthy" in text and "version" in text and "REDIS_URL at 127.0.0.1" in text
            assert errors == []
            page.close()
        finally:
            server.close()
