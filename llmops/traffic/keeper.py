"""Keeps one generator run: its folder under logs/loadtests/, written as the run goes, and its report."""
from __future__ import annotations

import platform
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

from . import htmlreport, provenance, results
from .config import TrafficConfig
from .output import JsonlWriter


def _same_service(a: str, b: str) -> bool:
    norm = lambda u: u.rstrip("/").replace("://localhost:", "://127.0.0.1:")  # noqa: E731
    return norm(a) == norm(b)


def backend_urls_for(proxy_url: str) -> list[str]:
    """The backends behind the proxy, known only when the run targets the stack the settings describe."""
    from .. import settings as stack_settings
    from ..errors import ConfigError

    try:
        loaded = stack_settings.load(strict=False)
    except ConfigError:
        return []
    return list(loaded.backend_urls) if _same_service(proxy_url, loaded.litellm_url) else []


class RunKeeper:
    """Writes run.json when the run starts, each request line as it ends, then summary.json and report.html."""

    def __init__(self, path: Path, config: TrafficConfig, run_doc: dict) -> None:
        self.path, self.config, self.run_doc = path, config, run_doc
        self.secrets = tuple(s for s in (config.api_key,) if s)
        self.jsonl = JsonlWriter(path / results.REQUESTS_FILE)
        self.report_path: Path | None = None
        self.report_error: str | None = None

    @classmethod
    async def open(cls, config: TrafficConfig, model: str, started_at: str, seed: int,
                   backend_urls: list[str] | None = None) -> RunKeeper:
        """Create the folder and write run.json (the stack is asked for its versions first)."""
        name = config.run_name or _default_name(config)
        path = results.create_dir(config.results_dir, name)
        backends = backend_urls_for(config.url) if backend_urls is None else backend_urls
        stack = await provenance.stack_facts(config.url, config.api_key, backends)
        secrets = tuple(s for s in (config.api_key,) if s)
        doc = {
            "format": results.FORMAT, "name": path.name, "kind": _kind(config), "status": "running",
            "started_at": started_at, "finished_at": None, "model": model, "seed": seed,
            "command": results.redact_argv(list(config.command), secrets) if config.command else None,
            "settings": config.public(), "stack": stack, "tool": config.user_agent,
            "host": {"hostname": socket.gethostname(), "python": sys.version.split()[0],
                     "platform": platform.platform()},
        }
        results.dump_json(path / results.RUN_FILE, doc, secrets)
        return cls(path, config, doc)

    def __call__(self, result) -> None:
        self.jsonl(result)

    def finish(self, summary: dict) -> Path | None:
        """Close the lines, write summary.json and run.json's end, then the report; returns the report's path."""
        self.run_doc.update(status="interrupted" if summary.get("interrupted") else "finished",
                            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
                            exit_code=summary.get("exit_code"), verdict=summary.get("verdict"))
        try:
            self.jsonl.close()
            results.dump_json(self.path / results.SUMMARY_FILE, summary, self.secrets)
            results.dump_json(self.path / results.RUN_FILE, self.run_doc, self.secrets)
            self.report_path = write_report(self.path, self.secrets)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # A full disk or a drawing bug must not cost the run its summary on screen and its exit code.
            self.report_error = f"{type(exc).__name__}: {exc}"
        return self.report_path

    def abandon(self) -> None:
        """The run failed before its summary: close the lines; the folder stays, listed as incomplete."""
        self.jsonl.close()


def write_report(path: Path, secrets: tuple[str, ...] = ()) -> Path:
    """(Re)draw report.html of a run folder from its kept files."""
    stored = results.load_run(path)
    if stored.summary is None:
        raise ValueError(f"{path}: {stored.reason}")
    records, bad = results.read_records(path / results.REQUESTS_FILE)
    page = htmlreport.render_run(stored.summary, records, stored.run, bad, name=stored.name)
    return results.write_text(path / results.REPORT_FILE, page, secrets)


def _kind(config: TrafficConfig) -> str:
    if config.sweep:
        return "sweep"
    return "open loop" if config.open_loop else "closed loop"


def _default_name(config: TrafficConfig) -> str:
    if config.sweep:
        return "sweep-" + "-".join(map(str, config.sweep))
    if config.open_loop:
        return f"rate-{config.rate:g}" if config.rate is not None else "burst"
    return f"c{config.concurrency or 1}"
