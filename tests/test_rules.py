"""Prometheus config and rules: promtool's checks and unit tests, and the rules' own conventions."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.rules.yml"))
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.test.yml"))

REQUIRED_ALERTS = {
    "ProxyDown",
    "BackendDown",
    "ProxyListsModelsButBackendDown",
    "HighErrorRatio",
    "HighLatencyP95",
    "SlowFirstToken",
    "QueueBacklog",
    "NoSuccessfulRequests",
    "ScrapeTargetDown",
    "GpuMemoryHigh",
    "GpuTemperatureHigh",
    "HostMemoryPressure",
    "ModelFallbacks",
    "EmbeddingLatencyHigh",
}
SEVERITIES = {"info", "warning", "critical"}


@pytest.fixture(scope="module")
def promtool() -> str:
    """The promtool binary; its absence is a failure, since `make setup` installs it with Prometheus."""
    path = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found on PATH (set PROMTOOL, or install Prometheus: `make setup`)")
    return path


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)


def _alert_rules() -> list[dict]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


def _alert_tests() -> list[dict]:
    cases = []
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


def test_rule_files_pass_promtool_check(promtool):
    result = _run([promtool, "check", "rules", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass_under_promtool(promtool):
    assert TEST_FILES, "no rules/tests/*.test.yml"
    result = _run([promtool, "test", "rules", *map(str, TEST_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_passes_promtool_check(promtool, tmp_path):
    # promtool stats the credentials file, which only exists while the stack runs: check a copy.
    shutil.copy(ROOT / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(RULES_DIR, tmp_path / "rules")
    (tmp_path / ".run").mkdir()
    (tmp_path / ".run" / "litellm_key").write_text("sk-dummy\n")
    result = _run([promtool, "check", "config", str(tmp_path / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout


def test_prometheus_config_keeps_the_key_out_and_scrapes_every_job():
    config = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"litellm", "dashboard", "ollama", "node", "alertmanager", "prometheus"}
    # Firing alerts go to the stack's Alertmanager, which is scraped at the same address.
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == \
        jobs["alertmanager"]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    litellm = jobs["litellm"]
    assert litellm["metrics_path"] == "/metrics/"
    assert litellm["authorization"] == {"type": "Bearer", "credentials_file": ".run/litellm_key"}
    assert "sk-" not in (ROOT / "prometheus.yml").read_text()
    interval = int(config["global"]["scrape_interval"].rstrip("s"))
    assert 5 <= interval <= 15
    assert config["rule_files"] == ["rules/*.rules.yml"]


def test_every_required_alert_is_defined():
    assert REQUIRED_ALERTS <= {rule["alert"] for rule in _alert_rules()}


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_has_for_severity_summary_and_description(rule):
    assert rule.get("for"), f"{rule['alert']} has no `for:`"
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    assert annotations.get("summary") and annotations.get("description")


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_has_a_firing_and_a_silent_unit_test(rule):
    cases = [case for case in _alert_tests() if case["alertname"] == rule["alert"]]
    assert any(case.get("exp_alerts") for case in cases), f"no test shows {rule['alert']} firing"
    assert any(not case.get("exp_alerts") for case in cases), f"no test shows {rule['alert']} silent"
