"""Writes one run: its kept folder (run.json first, each request line as it ends, then summary.json and
report.html), and the --output and --summary-json copies the command line asks for."""
from __future__ import annotations

import platform
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from . import folder, htmlreport, provenance


@dataclass(frozen=True)
class RunSpec:
    """What the load side tells the results about a run, once, before it starts; nothing else crosses over."""

    url: str  # the proxy the run targets (asked for its versions)
    api_key: str | None  # the proxy's key: sent to it for provenance, and removed from every file written
    tool: str  # the generator's name and version (its User-Agent)
    kind: str  # closed loop, open loop or sweep
    name: str  # the folder's name after its timestamp (--name, else the load shape)
    settings: dict  # the run's options, JSON-ready, the key left out
    command: tuple[str, ...] = ()  # the command line as typed; kept with the key redacted
    results_dir: Path | None = None  # keep the run in a folder here
    output: Path | None = None  # --output: one JSON line per request
    summary_json: Path | None = None  # --summary-json


class JsonlWriter:
    """Appends one line per finished request and flushes it, so a crash loses nothing written."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self.lines = 0

    def __call__(self, line: bytes) -> None:
        self._file.write(line)
        self._file.flush()
        self.lines += 1

    def close(self) -> None:
        self._file.close()


def backend_urls_for(proxy_url: str) -> list[str]:
    """The backends behind the proxy, known only when the run targets the stack the settings describe."""
    from ... import settings as stack_settings
    from ...errors import ConfigError

    try:
        loaded = stack_settings.load(strict=False)
    except ConfigError:
        return []
    return list(loaded.backend_urls) if _same_service(proxy_url, loaded.litellm_url) else []


def _same_service(a: str, b: str) -> bool:
    norm = lambda u: u.rstrip("/").replace("://localhost:", "://127.0.0.1:")  # noqa: E731
    return norm(a) == norm(b)


class RunWriter:
    """Everything a run writes: `record(line)` as each request ends, `finish(summary)` or `abandon()` at the end."""

    def __init__(self, spec: RunSpec, path: Path | None = None, run_doc: dict | None = None) -> None:
        self.spec, self.path, self.run_doc = spec, path, run_doc
        self.secrets = tuple(s for s in (spec.api_key,) if s)
        self._sinks = [JsonlWriter(p) for p in (spec.output, path and path / folder.REQUESTS_FILE) if p is not None]
        self.report_path: Path | None = None
        self.report_error: str | None = None

    @classmethod
    async def open(cls, spec: RunSpec, model: str, started_at: str, seed: int,
                   backend_urls: list[str] | None = None) -> RunWriter:
        """Open the --output file and, when the run is kept, create its folder and write run.json (the stack is
        asked for its versions first)."""
        if spec.results_dir is None:
            return cls(spec)
        path = folder.create_dir(spec.results_dir, spec.name)
        backends = backend_urls_for(spec.url) if backend_urls is None else backend_urls
        stack = await provenance.stack_facts(spec.url, spec.api_key, backends)
        secrets = tuple(s for s in (spec.api_key,) if s)
        doc = {
            "format": folder.FORMAT, "name": path.name, "kind": spec.kind, "status": "running",
            "started_at": started_at, "finished_at": None, "model": model, "seed": seed,
            "command": folder.redact_argv(list(spec.command), secrets) if spec.command else None,
            "settings": spec.settings, "stack": stack, "tool": spec.tool,
            "host": {"hostname": socket.gethostname(), "python": sys.version.split()[0],
                     "platform": platform.platform()},
        }
        folder.dump_json(path / folder.RUN_FILE, doc, secrets)
        return cls(spec, path, doc)

    @property
    def takes_lines(self) -> bool:
        """Whether any file takes request lines (else the load side need not build them)."""
        return bool(self._sinks)

    def record(self, line: dict) -> None:
        """One finished request's line, to every file that takes request lines."""
        data = orjson.dumps(line) + b"\n"
        for sink in self._sinks:
            sink(data)

    def finish(self, summary: dict) -> Path | None:
        """Close the lines, write the summaries and run.json's end, then the report; returns the report's path."""
        self.abandon()
        if self.spec.summary_json is not None:
            Path(self.spec.summary_json).parent.mkdir(parents=True, exist_ok=True)
            folder.dump_json(self.spec.summary_json, summary, self.secrets)
        if self.path is None:
            return None
        self.run_doc.update(status="interrupted" if summary.get("interrupted") else "finished",
                            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
                            exit_code=summary.get("exit_code"), verdict=summary.get("verdict"))
        try:
            folder.dump_json(self.path / folder.SUMMARY_FILE, summary, self.secrets)
            folder.dump_json(self.path / folder.RUN_FILE, self.run_doc, self.secrets)
            self.report_path = write_report(self.path, self.secrets)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # A full disk or a drawing bug must not cost the run its summary on screen and its exit code.
            self.report_error = f"{type(exc).__name__}: {exc}"
        return self.report_path

    def abandon(self) -> None:
        """Close the request lines (idempotent); a kept folder without a summary is listed as incomplete."""
        for sink in self._sinks:
            sink.close()


def write_report(path: Path, secrets: tuple[str, ...] = ()) -> Path:
    """(Re)draw report.html of a run folder from its kept files."""
    stored = folder.load_run(path)
    if stored.summary is None:
        raise ValueError(f"{path}: {stored.reason}")
    records, bad = folder.read_records(path / folder.REQUESTS_FILE)
    page = htmlreport.render_run(stored.summary, records, stored.run, bad, name=stored.name)
    return folder.write_text(path / folder.REPORT_FILE, page, secrets)
