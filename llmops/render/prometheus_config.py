"""Prometheus's config: the committed prometheus.yml rendered with this run's ports, backends and key file."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import yaml

from ..errors import ConfigError
from ..proxy.key import key_file
from ..settings import ROOT, Settings

SOURCE = ROOT / "prometheus.yml"


def load(path: Path = SOURCE) -> dict:
    """Parse prometheus.yml; a YAML error names the file and line."""
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(f"{path}:{mark.line + 1 if mark else 1}: YAML does not parse: {exc.problem or exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("scrape_configs"), list):
        raise ConfigError(f"{path}:1: expected a mapping with scrape_configs")
    return data


def targets(settings: Settings) -> dict[str, list[str]]:
    """The address of every scrape job, from the settings."""

    def local(port: object) -> str:
        return f"{urlparse(settings.litellm_url).hostname}:{port}"

    return {
        "litellm": [local(settings.litellm_port)],
        "dashboard": [local(settings.dashboard_port)],
        "prometheus": [local(settings.prometheus_port)],
        "node": [local(settings.node_exporter_port)],
        "ollama": [urlparse(u).netloc for u in settings.backend_urls],
        "alertmanager": [local(settings.alertmanager_port)],
    }


def render(settings: Settings, source: Path | None = None, skip: frozenset[str] = frozenset()) -> dict:
    """prometheus.yml with this run's targets, an absolute key file and absolute rule paths.

    Jobs named in `skip` (a service that does not run here, e.g. node_exporter not installed) are left
    out, so that ScrapeTargetDown speaks only of what should be up. Prometheus sends its firing alerts to
    Alertmanager unless it is turned off (ALERTMANAGER_ENABLED=false) or not installed (`alertmanager` in skip).
    """
    source = source or settings.prometheus_config_path
    data = load(source)
    jobs = targets(settings)
    if not settings.alertmanager_enabled:
        skip = skip | {"alertmanager"}
    data["scrape_configs"] = [j for j in data["scrape_configs"] if j.get("job_name") not in skip]
    for job in data["scrape_configs"]:
        name = job.get("job_name")
        if name in jobs:
            job["static_configs"] = [{"targets": jobs[name]}]
        auth = job.get("authorization")
        if isinstance(auth, dict) and "credentials_file" in auth:
            auth["credentials_file"] = str(key_file(settings.state_dir))
    data["rule_files"] = [str((source.parent / r).resolve()) for r in data.get("rule_files", [])]
    if settings.alertmanager_enabled and "alertmanager" not in skip:
        data["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(jobs["alertmanager"])}]}]}
    else:
        data.pop("alerting", None)
    return data


def write(settings: Settings, source: Path | None = None, skip: frozenset[str] = frozenset()) -> Path:
    path = settings.state_dir / "prometheus.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(render(settings, source, skip), sort_keys=False)
    path.write_text("# Rendered from prometheus.yml at start; do not edit.\n" + body)
    return path


def promtool() -> str | None:
    return shutil.which("promtool")


def rule_files(settings: Settings) -> list[Path]:
    """The rule files prometheus.yml names (globs expanded), relative to that file."""
    source = settings.prometheus_config_path
    found: list[Path] = []
    for pattern in load(source).get("rule_files", []) or []:
        found += sorted(source.parent.glob(pattern)) if any(c in pattern for c in "*?[") else [source.parent / pattern]
    return found


def check_rules(settings: Settings) -> None:
    """`promtool check rules` on each rule file; its message names the file and the line."""
    tool = promtool()
    if tool is None:
        return
    for path in rule_files(settings):
        if not path.exists():
            raise ConfigError(f"{settings.prometheus_config_path}: rule file {path} not found")
        result = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            words = " | ".join(ln.strip() for ln in (result.stderr + result.stdout).splitlines()
                               if ln.strip() and "Checking" not in ln)
            raise ConfigError(f"{path}: promtool check rules failed: {words}")


def check(path: Path) -> None:
    """`promtool check config` (which also checks the rule files); raise ConfigError with its words."""
    tool = promtool()
    if tool is None:
        return
    result = subprocess.run([tool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        lines = [ln for ln in (result.stderr + result.stdout).splitlines() if "FAILED" in ln or "error" in ln.lower()]
        raise ConfigError(f"{path}: promtool check config failed: {' | '.join(lines) or result.stderr.strip()}")
