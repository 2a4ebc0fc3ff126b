"""Bad input: a broken config or .env gets a message with the file and line, a non-zero exit, and the
running services are left untouched."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.support.env import ROOT, test_environ

pytestmark = pytest.mark.integration


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmops", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)


def pids(stack) -> dict[str, int]:
    return {name: info.pid for name, info in stack.supervisor.all_info().items()}


@pytest.fixture
def running(ensure_stack_ready):
    stack = ensure_stack_ready
    before = pids(stack)
    yield stack
    assert pids(stack) == before, "a running service was restarted or stopped by a failed command"
    assert all(row["healthy"] for row in stack.status() if not row["optional"])


def test_malformed_litellm_config_names_file_and_line(running, tmp_path):
    bad = tmp_path / "litellm_config.yaml"
    bad.write_text((ROOT / "litellm_config.yaml").read_text().replace(
        "      model: ollama_chat/smollm2:135m", "      model: [ollama_chat/smollm2:135m"))
    env = {**test_environ(), "LITELLM_CONFIG": str(bad)}
    result = cli(env, "restart", "litellm")
    assert result.returncode != 0
    assert f"{bad}:" in result.stderr and "YAML does not parse" in result.stderr
    # The start script checks the same before it execs the proxy.
    script = subprocess.run(["bash", str(ROOT / "scripts" / "start_litellm_proxy.sh")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert script.returncode == 2 and f"{bad}:" in script.stderr


def test_model_without_provider_names_its_line(running, tmp_path):
    bad = tmp_path / "litellm_config.yaml"
    text = (ROOT / "litellm_config.yaml").read_text()
    bad.write_text(text.replace("model: ollama_chat/smollm2:135m", "model: smollm2:135m"))
    line = next(i for i, ln in enumerate(bad.read_text().splitlines(), 1) if ln.strip() == "model: smollm2:135m")
    result = cli({**test_environ(), "LITELLM_CONFIG": str(bad)}, "restart", "litellm")
    assert result.returncode != 0 and f"{bad}:{line}:" in result.stderr and "names no provider" in result.stderr


def test_malformed_prometheus_yml_names_file_and_line(running, tmp_path):
    bad = tmp_path / "prometheus.yml"
    bad.write_text((ROOT / "prometheus.yml").read_text().replace("scrape_configs:", "scrape_configs: [", 1))
    result = cli({**test_environ(), "PROMETHEUS_CONFIG": str(bad)}, "restart", "prometheus")
    assert result.returncode != 0 and f"{bad}:" in result.stderr and "YAML does not parse" in result.stderr


def test_malformed_rule_file_names_file_and_line(running, tmp_path):
    shutil.copy(ROOT / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    rule = tmp_path / "rules" / "llm_stack.rules.yml"
    lines = rule.read_text().splitlines()
    index = next(i for i, ln in enumerate(lines) if ln.strip().startswith("expr:"))
    lines[index] = lines[index].split("expr:")[0] + "expr: sum(rate(up[5m]) by"
    rule.write_text("\n".join(lines) + "\n")
    result = cli({**test_environ(), "PROMETHEUS_CONFIG": str(tmp_path / "prometheus.yml")}, "restart", "prometheus")
    assert result.returncode != 0
    assert f"{rule}" in result.stderr and f"{index + 1}:" in result.stderr


def test_malformed_env_file_names_file_and_line(running, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("LITELLM_MASTER_KEY=sk-x\nLITELLM_PORT=eighty\n")
    env = {**test_environ(), "LLMOPS_ENV_FILE": str(env_file)}
    env.pop("LITELLM_PORT")
    result = cli(env, "restart")
    assert result.returncode != 0 and f"{env_file}:2: bad value for LITELLM_PORT" in result.stderr
    env_file.write_text("LITELLM_MASTER_KEY=sk-x\nnot a setting line\n")
    result = cli(env, "stop")
    assert result.returncode != 0 and f"{env_file}:2: expected KEY=VALUE" in result.stderr


@pytest.mark.parametrize("line, says", [
    ("ALERT_WEBHOOK_URL=hooks.example.com/x-secret-path", "bad value for ALERT_WEBHOOK_URL"),
    ("ALERT_SLACK_WEBHOOK_URL=https://hooks slack/x-secret-path", "bad value for ALERT_SLACK_WEBHOOK_URL"),
    ("ALERT_SMTP_TO=ops-at-example.com", "bad value for ALERT_SMTP_TO"),
    ("ALERT_SMTP_HOST=smtp.example.com", "ALERT_SMTP_HOST is set but ALERT_SMTP_FROM is empty"),
])
def test_a_malformed_alert_receiver_names_its_env_line_and_alertmanager_stays_up(running, tmp_path, line, says):
    env_file = tmp_path / ".env"
    key = running.settings.env_file.read_text()
    env_file.write_text(key.rstrip("\n") + f"\n{line}\n")
    number = len(env_file.read_text().splitlines())
    result = cli({**test_environ(), "LLMOPS_ENV_FILE": str(env_file)}, "restart", "alertmanager")
    assert result.returncode != 0
    assert f"{env_file}:{number}" in result.stderr and says in result.stderr, result.stderr
    assert "x-secret-path" not in result.stdout + result.stderr  # the value is not repeated
