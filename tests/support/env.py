"""The test stack's environment: the project root, its own ports, state, logs and key, and os.environ with them."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Importing litellm (the request-log callback's tests, the Router test) would otherwise load the
# project's .env into os.environ (LiteLLM's DEV mode runs load_dotenv), leaking the user's key into tests.
os.environ.setdefault("LITELLM_MODE", "PRODUCTION")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # and must not reach for the network

# The test stack never collides with a stack the user runs: its own ports, state, logs and key.
# LLMOPS_TEST_PORT_OFFSET shifts every test port, so two checkouts can run their suites side by side.
_OFFSET = int(os.environ.get("LLMOPS_TEST_PORT_OFFSET", "0"))
TEST_ENV = {
    "LLMOPS_STATE_DIR": ".run-test/state",
    "LLMOPS_LOG_DIR": ".run-test/logs",
    "PROMETHEUS_DATA_DIR": ".run-test/prometheus-data",
    "ALERTMANAGER_DATA_DIR": ".run-test/alertmanager-data",
    "ALERT_HISTORY_PATH": ".run-test/alerts.db",
    "ALERT_GROUP_WAIT": "1s",  # the tests' alerts reach the receivers in seconds
    "ALERT_GROUP_INTERVAL": "2s",
    "REQUEST_LOG_PATH": ".run-test/requests.db",
    "LLMOPS_ENV_FILE": str(ROOT / ".run-test" / "env"),
    "OLLAMA_PORT": str(21434 + _OFFSET),
    "LITELLM_PORT": str(18000 + _OFFSET),
    "PROMETHEUS_PORT": str(19090 + _OFFSET),
    "DASHBOARD_PORT": str(13001 + _OFFSET),
    "NODE_EXPORTER_PORT": str(19100 + _OFFSET),
    "ALERTMANAGER_PORT": str(19093 + _OFFSET),
    "REDIS_PORT": str(16379 + _OFFSET),  # a proxy with several workers never shares a queue with another checkout
    "PROBE_INTERVAL": "1",
    "CANARY_INTERVAL": "10",
    "BIND_HOST": "127.0.0.1",
}


def offset_port(base: int) -> str:
    """A test port shifted by LLMOPS_TEST_PORT_OFFSET (offsets are multiples of 100: keep bases off the session's)."""
    return str(base + _OFFSET)


def test_environ() -> dict[str, str]:
    """os.environ with the test stack's settings (the environment wins over any .env)."""
    env = dict(os.environ)
    env.update(TEST_ENV)
    return env


test_environ.__test__ = False  # a helper, not a test
