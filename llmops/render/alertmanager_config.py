"""Alertmanager's config, rendered from `.env` at each start into the state folder (mode 0600: it holds secrets).

The dashboard is always a receiver (its alert history): Alertmanager's webhook JSON to /api/alerts/webhook,
with ALERT_RECEIVER_TOKEN as a Bearer token read from a 0600 file in the state folder (so the token is not in
this config). The others are optional: a generic webhook (Alertmanager's JSON), a Slack-compatible incoming
webhook, and e-mail through an SMTP smarthost. Each receiver gets every alert (child routes with
`continue: true`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

from ..errors import ConfigError
from ..settings import Settings, parse_env_file

FILE = "alertmanager.yml"
TOKEN_FILE = "alert_token"
WEBHOOK_TOKEN_FILE = "webhook_token"
DASHBOARD = "dashboard"
WEBHOOK_PATH = "/api/alerts/webhook"
# Grouped per alert and instance: two backends down are two notices, one backend flapping is one group. The
# dashboard exports every backend's gauge, so its alerts share the dashboard's instance: `backend` tells them apart.
GROUP_BY = ["alertname", "instance", "backend"]

SLACK_TITLE = '[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] ' \
              '{{ .CommonLabels.alertname }}'
SLACK_TEXT = "{{ range .Alerts }}{{ .Annotations.summary }}{{ if .Annotations.description }}: " \
             "{{ .Annotations.description }}{{ end }}\n{{ end }}"
EMAIL_SUBJECT = '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} ' \
                '{{ if .CommonLabels.instance }}on {{ .CommonLabels.instance }}{{ end }}'


def binary() -> str | None:
    """Debian names it prometheus-alertmanager; upstream tarballs alertmanager."""
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def amtool() -> str | None:
    return shutil.which("amtool")


def where(settings: Settings, name: str) -> str:
    """`.env:LINE` when the setting comes from the .env file, else the environment variable's name."""
    try:
        found = parse_env_file(settings.env_file).get(name)
    except ConfigError:
        found = None
    if found is not None:
        return f"{settings.env_file}:{found[1]}"
    return f"setting {name}"


def receivers(settings: Settings) -> list[dict]:
    """The receivers `.env` configures, in a fixed order (webhook, slack, email); a half-set e-mail fails."""
    found: list[dict] = []
    values = settings.values
    if values["ALERT_WEBHOOK_URL"]:
        hook = {"url": values["ALERT_WEBHOOK_URL"], "send_resolved": True, "max_alerts": 0}
        if values["ALERT_WEBHOOK_TOKEN"]:  # from a 0600 file: Alertmanager never logs it, unlike the URL
            hook["http_config"] = {"authorization": {
                "type": "Bearer", "credentials_file": str(settings.state_dir / WEBHOOK_TOKEN_FILE)}}
        found.append({"name": "webhook", "webhook_configs": [hook]})
    elif values["ALERT_WEBHOOK_TOKEN"]:
        raise ConfigError(f"{where(settings, 'ALERT_WEBHOOK_TOKEN')}: ALERT_WEBHOOK_TOKEN is set but "
                          "ALERT_WEBHOOK_URL is empty")
    if values["ALERT_SLACK_WEBHOOK_URL"]:
        found.append({"name": "slack", "slack_configs": [{
            "api_url": values["ALERT_SLACK_WEBHOOK_URL"], "send_resolved": True,
            "title": SLACK_TITLE, "text": SLACK_TEXT}]})
    smtp = {name: values[name] for name in ("ALERT_SMTP_HOST", "ALERT_SMTP_FROM", "ALERT_SMTP_TO")}
    if any(smtp.values()):
        for name, value in smtp.items():
            if not value:
                other = next(n for n, v in smtp.items() if v)
                raise ConfigError(f"{where(settings, other)}: {other} is set but {name} is empty: "
                                  "e-mail alerts need ALERT_SMTP_HOST, ALERT_SMTP_FROM and ALERT_SMTP_TO")
        email = {
            "to": ", ".join(values["ALERT_SMTP_TO"]),
            "from": values["ALERT_SMTP_FROM"],
            "smarthost": f"{values['ALERT_SMTP_HOST']}:{values['ALERT_SMTP_PORT']}",
            "require_tls": bool(values["ALERT_SMTP_TLS"]),
            "send_resolved": True,
            "headers": {"Subject": EMAIL_SUBJECT},
        }
        if values["ALERT_SMTP_USER"]:
            email["auth_username"] = values["ALERT_SMTP_USER"]
            email["auth_password"] = values["ALERT_SMTP_PASSWORD"]
        elif values["ALERT_SMTP_PASSWORD"]:
            raise ConfigError(f"{where(settings, 'ALERT_SMTP_PASSWORD')}: ALERT_SMTP_PASSWORD is set but "
                              "ALERT_SMTP_USER is empty")
        found.append({"name": "email", "email_configs": [email]})
    return found


def token_file(settings: Settings) -> Path:
    return settings.state_dir / TOKEN_FILE


def dashboard_receiver(settings: Settings) -> dict:
    """The dashboard's alert history: every notification, firing and resolved, with the token in a header."""
    return {"name": DASHBOARD, "webhook_configs": [{
        "url": settings.url("DASHBOARD_PORT") + WEBHOOK_PATH, "send_resolved": True, "max_alerts": 0,
        "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file(settings))}}}]}


def render(settings: Settings) -> dict:
    """The config as a dict: the dashboard's receiver first, then those of `.env`."""
    every = [dashboard_receiver(settings)] + receivers(settings)
    route: dict = {
        "receiver": every[0]["name"],
        "group_by": list(GROUP_BY),
        "group_wait": settings.values["ALERT_GROUP_WAIT"],
        "group_interval": settings.values["ALERT_GROUP_INTERVAL"],
        "repeat_interval": settings.values["ALERT_REPEAT_INTERVAL"],
    }
    if len(every) > 1:
        # Every receiver gets every alert: one child route each, each going on to the next.
        route["routes"] = [{"receiver": r["name"], "continue": True} for r in every]
    return {"route": route, "receivers": every}


def path(settings: Settings) -> Path:
    return settings.state_dir / FILE


def write(settings: Settings) -> Path:
    """Write the rendered config and the token file, readable by their owner only (webhook URLs, SMTP password)."""
    target = path(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    _private(token_file(settings), str(settings.values["ALERT_RECEIVER_TOKEN"]))
    if settings.values["ALERT_WEBHOOK_TOKEN"]:
        _private(settings.state_dir / WEBHOOK_TOKEN_FILE, str(settings.values["ALERT_WEBHOOK_TOKEN"]))
    body = "# Rendered from .env at start; do not edit (mode 0600: it holds secrets).\n" + \
        yaml.safe_dump(render(settings), sort_keys=False)
    _private(target, body)
    return target


def _private(target: Path, body: str) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(body)
    os.chmod(target, 0o600)


def _secrets(settings: Settings) -> list[str]:
    from ..settings import SECRETS

    return [str(settings.values[name]) for name in SECRETS if settings.values.get(name)]


def redact(text: str, settings: Settings) -> str:
    for secret in _secrets(settings):
        text = text.replace(secret, "<secret>")
    return text


def check(target: Path, settings: Settings) -> str:
    """`amtool check-config`; raise ConfigError with its words (secrets replaced). Returns its summary."""
    tool = amtool()
    if tool is None:
        return "amtool not installed: not checked"
    result = subprocess.run([tool, "check-config", str(target)], capture_output=True, text=True, timeout=60)
    words = redact((result.stdout + result.stderr).strip(), settings)
    if result.returncode != 0:
        # "Checking 'FILE'  FAILED: why" and "amtool: error: failed to validate 1 file(s)": the why is what counts.
        lines = [ln.split("FAILED:", 1)[1].strip() for ln in words.splitlines() if "FAILED:" in ln] or [words]
        raise ConfigError(f"{target}: amtool check-config failed: {' | '.join(lines)}")
    return words


def argv(settings: Settings, program: str) -> list[str]:
    """Alertmanager on 127.0.0.1 (BIND_HOST) only: no cluster (its gossip port would open on 0.0.0.0:9094)."""
    return [
        program,
        f"--config.file={path(settings)}",
        f"--storage.path={settings.alertmanager_data_dir}",
        f"--web.listen-address={settings.bind_host}:{settings.alertmanager_port}",
        f"--web.external-url={settings.alertmanager_url}",
        "--cluster.listen-address=",
    ]
