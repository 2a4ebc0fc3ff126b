"""Security: loopback only, the key in no log line, files readable by their owner only, no broad kill."""
from __future__ import annotations

import re
import stat

import psutil
import pytest

from tests.support import chaos
from tests.support.env import ROOT

BROAD_KILL = re.compile(r"\b(pkill|killall)\b|kill\s+-\d+\s+-1\b|os\.kill\(\s*-1|os\.killpg\(\s*0\b|kill\s+0\b")


@pytest.mark.integration
def test_every_listener_of_the_stack_is_on_loopback(ensure_stack_ready):
    procs = chaos.stack_processes(ensure_stack_ready)
    pids = {p.pid for p in procs}
    listeners = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert len(listeners) >= 4
    outside = [(c.laddr.ip, c.laddr.port, c.pid) for c in listeners if c.laddr.ip not in ("127.0.0.1", "::1")]
    assert outside == []


@pytest.mark.integration
def test_the_key_is_in_no_log_and_secret_files_are_private(ensure_stack_ready):
    stack = ensure_stack_ready
    logs = list(stack.settings.log_dir.glob("*.log"))
    assert logs
    token = stack.settings.alert_receiver_token
    assert token
    for path in logs:
        assert stack.key not in path.read_text(errors="replace"), f"the key is in {path}"
        assert token not in path.read_text(errors="replace"), f"the alert receiver token is in {path}"
    assert stat.S_IMODE(stack.settings.env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((stack.settings.state_dir / "litellm_key").stat().st_mode) == 0o600
    assert stat.S_IMODE(stack.settings.state_dir.stat().st_mode) == 0o700
    for rendered in ("prometheus.yml", "litellm_config.yaml", "supervisord.conf", "alertmanager.yml"):
        assert stack.key not in (stack.settings.state_dir / rendered).read_text()
    # Alertmanager's config holds the receivers' secrets (webhook tokens, the SMTP password).
    assert stat.S_IMODE((stack.settings.state_dir / "alertmanager.yml").stat().st_mode) == 0o600
    assert stat.S_IMODE((stack.settings.state_dir / "alert_token").stat().st_mode) == 0o600
    assert token not in (stack.settings.state_dir / "alertmanager.yml").read_text()


def test_no_broad_process_kill_anywhere_in_the_code():
    offenders = []
    for path in [*ROOT.glob("*.py"), *ROOT.glob("Makefile"), *(ROOT / "llmops").rglob("*.py"),
                 *(ROOT / "scripts").rglob("*"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py"),
                 ROOT / ".ci" / "run"]:
        if path.is_file() and path.name != "test_security.py":
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if BROAD_KILL.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_broad_kill_pattern_catches_what_it_should():
    # Built from pieces, so that this file itself does not read as a broad kill to other checks.
    for line in ("p" + "kill -f litellm", "kill" + "all prometheus", "kill -9 -1", "os.kill(-1, 9)", "os.killpg(0, 15)"):
        assert BROAD_KILL.search(line), line
    for line in ("os.kill(pid, signal.SIGKILL)", "os.killpg(proc.pid, 15)", "skill level"):
        assert not BROAD_KILL.search(line), line


def test_git_ignores_the_secret_and_runtime_files():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    for entry in (".env", ".run/", ".venv/", "logs/", "data/alerts.db*", "data/alertmanager/"):
        assert entry in ignored
