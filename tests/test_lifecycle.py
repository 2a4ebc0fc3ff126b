"""`python -m llmops start|stop|status` with the real processes, on ports of its own."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import ROOT, offset_port, test_environ
from tests.support.fakes.ollama import FakeOllama
from tests.support.helpers import wait_for

pytestmark = pytest.mark.integration

# Its own ports, shifted by the checkout's offset, 50 away from the session stack's (offsets step by 100).
PORTS = {"OLLAMA_PORT": offset_port(22484), "LITELLM_PORT": offset_port(18050), "PROMETHEUS_PORT": offset_port(19140),
         "DASHBOARD_PORT": offset_port(13051), "NODE_EXPORTER_PORT": offset_port(19150),
         "ALERTMANAGER_PORT": offset_port(19143)}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    environ = test_environ()
    environ.update(PORTS)
    environ.update({
        "LLMOPS_STATE_DIR": ".run-test/lc/state", "LLMOPS_LOG_DIR": ".run-test/lc/logs",
        "PROMETHEUS_DATA_DIR": ".run-test/lc/prometheus-data", "ALERTMANAGER_DATA_DIR": ".run-test/lc/alertmanager-data",
        "LLMOPS_ENV_FILE": str(ROOT / ".run-test" / "lc" / "env"), "CANARY_INTERVAL": "0",
    })
    Path(environ["LLMOPS_ENV_FILE"]).parent.mkdir(parents=True, exist_ok=True)
    yield environ
    cli(environ, "stop")


def cli(env: dict, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmops", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def status(env: dict) -> tuple[int, dict[str, dict]]:
    result = cli(env, "status", "--json", timeout=60)
    return result.returncode, {row["name"]: row for row in json.loads(result.stdout)}


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0



def test_status_of_a_stopped_stack_exits_non_zero(env):
    code, rows = status(env)
    assert code == 1
    assert rows["litellm"]["state"] == "STOPPED" and not rows["litellm"]["healthy"]


def test_start_status_start_again(env):
    first = cli(env, "start")
    assert first.returncode == 0, first.stdout + first.stderr
    code, rows = status(env)
    assert code == 0, rows
    for name in ("ollama", "litellm", "prometheus", "alertmanager", "dashboard"):
        assert rows[name]["healthy"] and rows[name]["pid"], rows[name]
    assert rows["ollama"]["state"] == "RUNNING (embedded)"
    assert "smollm2:135m" in rows["litellm"]["health"]
    second = cli(env, "start")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("already running") >= 4
    _, again = status(env)
    assert {n: r["pid"] for n, r in again.items()} == {n: r["pid"] for n, r in rows.items()}


def test_env_file_is_created_0600(env):
    path = Path(env["LLMOPS_ENV_FILE"])
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600


def test_sigkilled_service_is_restarted_by_the_supervisor(env):
    _, rows = status(env)
    old = rows["dashboard"]["pid"]
    os.kill(old, signal.SIGKILL)

    def restarted():
        code, now = status(env)
        row = now["dashboard"]
        return row["healthy"] and row["pid"] not in (None, old) and row["state"] == "RUNNING" and row

    row = wait_for(restarted, 30, "the supervisor to restart the dashboard and report it RUNNING")
    assert row["uptime_s"] is not None and row["uptime_s"] < 30


def test_a_changed_setting_restarts_the_stack_on_the_next_start(env):
    """Services read settings when they start; `start` with a changed one restarts them, or they keep the old."""
    import yaml

    _, before = status(env)
    changed = dict(env, LITELLM_TIMEOUT="60")
    result = cli(changed, "start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "settings changed since the stack started (LITELLM_TIMEOUT (unset) -> 60" in result.stdout
    code, after = status(changed)
    assert code == 0, after
    assert after["litellm"]["pid"] != before["litellm"]["pid"]
    rendered = yaml.safe_load((ROOT / env["LLMOPS_STATE_DIR"] / "litellm_config.yaml").read_text())
    assert rendered["litellm_settings"]["request_timeout"] == 60
    snapshot = (ROOT / env["LLMOPS_STATE_DIR"] / "settings.json")
    assert (snapshot.stat().st_mode & 0o777) == 0o600
    key = next(line.split("=", 1)[1] for line in Path(env["LLMOPS_ENV_FILE"]).read_text().splitlines()
               if line.startswith("LITELLM_MASTER_KEY="))
    assert key.strip('"') not in snapshot.read_text()
    noted = cli(env, "status")
    assert "note: the running stack was started with other settings (LITELLM_TIMEOUT 60.0 -> (unset))" in noted.stdout
    back = cli(env, "start")
    assert back.returncode == 0 and "LITELLM_TIMEOUT 60.0 -> (unset)" in back.stdout, back.stdout + back.stderr
    unchanged = cli(env, "start")
    assert "settings changed" not in unchanged.stdout and unchanged.stdout.count("already running") >= 4


def test_an_inline_comment_in_the_env_file_starts_the_stack_and_a_bad_value_names_its_line(env):
    """A value may carry a comment after it (as python-dotenv and docker compose read .env); a bad one stops
    `start` with the file and line, and the running stack stays up."""
    path = Path(env["LLMOPS_ENV_FILE"])
    original = path.read_text()
    assert original.endswith("\n")
    from_file = {name: value for name, value in env.items() if name != "PROBE_INTERVAL"}  # the environment would win
    try:
        path.write_text(original + "PROBE_INTERVAL=2 # seconds\n")
        started = cli(from_file, "start")
        assert started.returncode == 0, started.stdout + started.stderr
        assert "PROBE_INTERVAL 1.0 -> 2.0" in started.stdout
        code, rows = status(from_file)
        assert code == 0, rows
        line = original.count("\n") + 1
        path.write_text(original + "PROBE_INTERVAL=abc # seconds\n")
        refused = cli(from_file, "start")
        assert refused.returncode != 0
        assert f"{path.name}:{line}: bad value for PROBE_INTERVAL" in refused.stderr, refused.stdout + refused.stderr
    finally:
        path.write_text(original)
    code, rows = status(env)
    assert code == 0, rows
    back = cli(env, "start")
    assert back.returncode == 0 and "PROBE_INTERVAL 2.0 -> 1.0" in back.stdout, back.stdout + back.stderr


def test_stop_leaves_nothing_listening_and_stop_again_succeeds(env):
    _, rows = status(env)
    pids = [r["pid"] for r in rows.values() if r["pid"]]
    result = cli(env, "stop")
    assert result.returncode == 0, result.stderr
    for port in PORTS.values():
        assert not listening(int(port)), f"port {port} still listening after stop"
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    again = cli(env, "stop")
    assert again.returncode == 0 and "not running" in again.stdout


def test_foreign_listener_gives_a_clear_error_and_survives(env):
    port = int(env["DASHBOARD_PORT"])
    foreign = socket.socket()
    foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    foreign.bind(("127.0.0.1", port))
    foreign.listen()
    try:
        result = cli(env, "start")
        assert result.returncode != 0
        assert f"port {port}" in result.stderr and f"pid {os.getpid()}" in result.stderr
        assert "Nothing was killed" in result.stderr
        assert listening(port)  # the foreign listener is untouched
    finally:
        foreign.close()
        cli(env, "stop")


def test_stale_state_after_a_crash_is_cleaned_up(env):
    state = ROOT / env["LLMOPS_STATE_DIR"]
    state.mkdir(parents=True, exist_ok=True)
    (state / "supervisord.pid").write_text("999999\n")
    (state / "supervisor.sock").write_text("")
    result = cli(env, "stop")
    assert result.returncode == 0 and "stale" in result.stdout
    assert not (state / "supervisor.sock").exists()


def test_an_ollama_already_running_is_used_and_never_stopped(env):
    """A FAKE Ollama already running on the port before `start` is used as is, and never stopped."""
    server = FakeOllama(port=int(env["OLLAMA_PORT"])).start()
    try:
        result = cli(env, "start")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "external Ollama" in result.stdout and "not managed by this stack" in result.stdout
        _, rows = status(env)
        assert rows["ollama"]["state"] == "external" and rows["ollama"]["pid"] is None
        assert rows["ollama"]["healthy"] and "0.0.0-fake" in rows["ollama"]["health"]
        assert cli(env, "stop").returncode == 0
        assert listening(int(env["OLLAMA_PORT"]))  # ours stopped, the external one untouched
        assert not listening(int(env["LITELLM_PORT"]))
    finally:
        server.stop()


def test_stop_reaches_a_supervisor_that_lost_its_socket(env):
    assert cli(env, "start").returncode == 0
    _, rows = status(env)
    pids = [r["pid"] for r in rows.values() if r["pid"]]
    (ROOT / env["LLMOPS_STATE_DIR"] / "supervisor.sock").unlink()
    result = cli(env, "stop")
    assert result.returncode == 0 and "does not answer" in result.stdout
    for port in PORTS.values():
        assert not listening(int(port)), f"port {port} still listening"
    assert all(not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
               for pid in pids)
