"""Alertmanager's config rendered from .env: each combination of receivers, amtool's check, bad values naming the line."""
from __future__ import annotations

import itertools
import os
import stat
import subprocess

import pytest
import yaml

from llmops import settings
from llmops.errors import ConfigError
from llmops.render import alertmanager_config as amconfig
from llmops.render import prometheus_config as promconfig

WEBHOOK = {"ALERT_WEBHOOK_URL": "http://127.0.0.1:5001/hook", "ALERT_WEBHOOK_TOKEN": "webhook-secret-token"}
SLACK = {"ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/slack-secret-token"}
EMAIL = {"ALERT_SMTP_HOST": "smtp.example.com", "ALERT_SMTP_PORT": "2525", "ALERT_SMTP_FROM": "llmops@example.com",
         "ALERT_SMTP_TO": "ops@example.com, oncall@example.com", "ALERT_SMTP_USER": "llmops",
         "ALERT_SMTP_PASSWORD": "smtp-secret-pw"}
RECEIVERS = {"webhook": WEBHOOK, "slack": SLACK, "email": EMAIL}
SECRETS = ("slack-secret-token", "smtp-secret-pw", "receiver-secret-token", "webhook-secret-token")


def load(tmp_path, env_text: str = "", **environ) -> settings.Settings:
    env = tmp_path / ".env"
    env.write_text(env_text)
    return settings.load(env_file=env, environ={"LLMOPS_STATE_DIR": str(tmp_path / "state"), "DASHBOARD_PORT": "13999",
                                                "ALERT_RECEIVER_TOKEN": "receiver-secret-token", **environ})


COMBINATIONS = [c for n in range(4) for c in itertools.combinations(RECEIVERS, n)]


@pytest.mark.parametrize("names", COMBINATIONS, ids=lambda names: "+".join(names) or "none")
def test_each_combination_renders_routes_to_every_receiver_and_passes_amtool(tmp_path, names):
    environ = {k: v for name in names for k, v in RECEIVERS[name].items()}
    s = load(tmp_path, **environ)
    config = amconfig.render(s)
    route = config["route"]
    assert route["group_by"] == ["alertname", "instance", "backend"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("15s", "1m", "4h")
    got = [r["name"] for r in config["receivers"]]
    assert got == ["dashboard", *names]  # the dashboard's history is always a receiver
    assert route["receiver"] == "dashboard"
    if names:  # every receiver gets every alert
        assert route["routes"] == [{"receiver": n, "continue": True} for n in got]
    else:
        assert "routes" not in route
    (dashboard,) = config["receivers"][0]["webhook_configs"]
    assert dashboard["url"] == "http://127.0.0.1:13999/api/alerts/webhook" and dashboard["max_alerts"] == 0
    token_file = tmp_path / "state" / "alert_token"
    assert dashboard["http_config"] == {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}
    for receiver in config["receivers"]:
        for key, items in receiver.items():
            if key.endswith("_configs"):
                assert all(item["send_resolved"] is True for item in items)
    if "email" in names:
        email = config["receivers"][got.index("email")]["email_configs"][0]
        assert email["smarthost"] == "smtp.example.com:2525"
        assert email["to"] == "ops@example.com, oncall@example.com"
        assert email["auth_username"] == "llmops" and email["require_tls"] is True
    path = amconfig.write(s)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # it holds the SMTP password and webhook URLs
    assert yaml.safe_load(path.read_text()) == config
    assert "receiver-secret-token" not in path.read_text()  # the token is in its own file, for Alertmanager to read
    assert "webhook-secret-token" not in path.read_text()
    if "webhook" in names:
        (hook,) = config["receivers"][got.index("webhook")]["webhook_configs"]
        secret = tmp_path / "state" / "webhook_token"
        assert hook["http_config"] == {"authorization": {"type": "Bearer", "credentials_file": str(secret)}}
        assert secret.read_text() == "webhook-secret-token" and stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert token_file.read_text() == "receiver-secret-token" and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    summary = amconfig.check(path, s)
    assert "SUCCESS" in summary
    assert not any(secret in summary for secret in SECRETS)


def test_amtool_is_installed_for_the_tests():
    assert amconfig.amtool(), "amtool missing: scripts/setup.sh --test-tools installs prometheus-alertmanager"
    assert amconfig.binary()


@pytest.mark.parametrize("line, problem", [
    ("ALERT_WEBHOOK_URL=not-a-url", "ALERT_WEBHOOK_URL: not an http"),
    ("ALERT_SLACK_WEBHOOK_URL=hooks.slack.com/services/x", "ALERT_SLACK_WEBHOOK_URL: not an http"),
    ("ALERT_SMTP_FROM=nobody", "ALERT_SMTP_FROM: 'nobody' is not an e-mail address"),
    ("ALERT_SMTP_TO=ops@example.com, broken", "ALERT_SMTP_TO: 'broken' is not an e-mail address"),
    ("ALERT_SMTP_HOST=smtp.example.com:25", "ALERT_SMTP_HOST: 'smtp.example.com:25' is not a host name"),
    ("ALERT_SMTP_PORT=99999", "ALERT_SMTP_PORT: port 99999 out of range"),
    ("ALERT_GROUP_WAIT=soon", "ALERT_GROUP_WAIT: 'soon' is not a duration"),
    ("ALERTMANAGER_ENABLED=maybe", "ALERTMANAGER_ENABLED: 'maybe' is not true or false"),
])
def test_a_malformed_value_names_the_env_line(tmp_path, line, problem):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"# alerts\n{line}\n")
    message = str(caught.value)
    assert f".env:2: bad value for {problem}" in message


def test_a_bad_webhook_url_is_not_repeated_in_the_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "ALERT_SLACK_WEBHOOK_URL=hooks.slack.com/services/T0/B0/slack-secret-token\n")
    assert "slack-secret-token" not in str(caught.value)


def test_half_an_email_receiver_names_the_line_of_what_is_set(tmp_path):
    s = load(tmp_path, "PROBE_INTERVAL=5\nALERT_SMTP_HOST=smtp.example.com\n")
    with pytest.raises(ConfigError, match=r"\.env:2: ALERT_SMTP_HOST is set but ALERT_SMTP_FROM is empty"):
        amconfig.receivers(s)
    s = load(tmp_path, "ALERT_SMTP_HOST=h\nALERT_SMTP_FROM=a@b.c\nALERT_SMTP_TO=d@e.f\nALERT_SMTP_PASSWORD=pw-only\n")
    with pytest.raises(ConfigError, match=r"\.env:4: ALERT_SMTP_PASSWORD is set but ALERT_SMTP_USER is empty") as caught:
        amconfig.receivers(s)
    assert "pw-only" not in str(caught.value)


def test_amtool_failure_is_a_config_error_with_secrets_replaced(tmp_path):
    s = load(tmp_path, **SLACK)
    bad = tmp_path / "bad.yml"
    bad.write_text("route:\n  receiver: nowhere\nreceivers:\n  - name: slack\n    slack_configs:\n"
                   "      - api_url: 'https://hooks.slack.com/services/T0/B0/slack-secret-token'\n")
    with pytest.raises(ConfigError, match="amtool check-config failed") as caught:
        amconfig.check(bad, s)
    assert "nowhere" in str(caught.value) and "slack-secret-token" not in str(caught.value)


def test_alertmanager_argv_is_single_instance_on_the_bind_host(tmp_path):
    s = load(tmp_path, ALERTMANAGER_PORT="19999")
    argv = amconfig.argv(s, "prometheus-alertmanager")
    assert "--cluster.listen-address=" in argv  # empty: no gossip port on 0.0.0.0:9094
    assert "--web.listen-address=127.0.0.1:19999" in argv
    assert f"--storage.path={s.alertmanager_data_dir}" in argv
    assert f"--config.file={tmp_path / 'state' / 'alertmanager.yml'}" in argv


def test_prometheus_sends_alerts_to_alertmanager_unless_it_is_off_or_missing(tmp_path):
    s = load(tmp_path, ALERTMANAGER_PORT="19999")
    rendered = promconfig.render(s)
    assert rendered["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:19999"]}]}]}
    assert any(j["job_name"] == "alertmanager" for j in rendered["scrape_configs"])
    for off in (promconfig.render(load(tmp_path, ALERTMANAGER_ENABLED="false")),
                promconfig.render(s, skip=frozenset({"alertmanager"}))):
        assert "alerting" not in off
        assert not any(j["job_name"] == "alertmanager" for j in off["scrape_configs"])


def test_alertmanager_is_a_service_after_prometheus_and_off_when_disabled(tmp_path):
    from llmops.stack.services import all_services

    names = [svc.name for svc in all_services(load(tmp_path), "embedded")]
    assert names.index("alertmanager") == names.index("prometheus") + 1
    off = [svc.name for svc in all_services(load(tmp_path, ALERTMANAGER_ENABLED="false"), "embedded")]
    assert "alertmanager" not in off


def test_secret_settings_are_hashed_in_the_snapshot_and_change_notes(tmp_path):
    import json

    from llmops.stack import Stack

    started = Stack(load(tmp_path, **SLACK, **EMAIL))
    started.settings.state_dir.mkdir(parents=True)
    snapshot = json.dumps(started.settings_snapshot())
    assert not any(secret in snapshot for secret in SECRETS)
    started.settings_file.write_text(snapshot)
    now = Stack(load(tmp_path, **EMAIL, ALERT_SLACK_WEBHOOK_URL="https://hooks.slack.com/services/other-secret"))
    changed = now.changed_settings()
    assert "ALERT_SLACK_WEBHOOK_URL" in changed
    assert not any("secret" in c for c in changed)


def test_lint_checks_the_rendered_config_with_amtool(tmp_path):
    env = {**os.environ, "LLMOPS_ENV_FILE": str(tmp_path / ".env"), **SLACK}
    (tmp_path / ".env").write_text("")
    result = subprocess.run([str(settings.ROOT / ".venv" / "bin" / "python"), "-m", "llmops", "alerts", "check"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "SUCCESS" in result.stdout and "slack-secret-token" not in result.stdout
    env["ALERT_SMTP_HOST"] = "smtp.example.com"
    result = subprocess.run([str(settings.ROOT / ".venv" / "bin" / "python"), "-m", "llmops", "alerts", "check"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2 and "ALERT_SMTP_FROM is empty" in result.stderr
    assert "alerts check" in (settings.ROOT / "scripts" / "lint.sh").read_text()


def test_a_webhook_token_without_a_webhook_url_names_the_line(tmp_path):
    s = load(tmp_path, "ALERT_WEBHOOK_TOKEN=orphan-token\n")
    with pytest.raises(ConfigError, match=r"\.env:1: ALERT_WEBHOOK_TOKEN is set but ALERT_WEBHOOK_URL is empty") as caught:
        amconfig.receivers(s)
    assert "orphan-token" not in str(caught.value)
