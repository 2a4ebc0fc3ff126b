"""Kept runs: one folder per generator run under logs/loadtests/, its files written safely, and read back.

A folder is `<UTC timestamp>-<name>/` holding `run.json` (command line, settings, stack versions;
written first), `requests.jsonl` (one line per request as it ends), then `summary.json` and
`report.html` once the run ends. A folder without a readable summary is a run that crashed (or is
still running): readers list it as incomplete and never fail on it.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ...errors import ConfigError
from ...proxy.key import REDACTED, redact
from .summary import check_summary, needs_records, upgrade_record, upgrade_summary

RUN_FILE, SUMMARY_FILE, REQUESTS_FILE, REPORT_FILE = "run.json", "summary.json", "requests.jsonl", "report.html"
FILES = (REPORT_FILE, SUMMARY_FILE, RUN_FILE, REQUESTS_FILE)  # what a run folder may hold; nothing else is served
FORMAT = 1
COMPARISONS = "comparisons"  # sub-folder of the results folder for --compare pages
RUN_NAME = re.compile(r"^\d{8}T\d{6}Z-[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def dir_of(settings) -> Path:
    """The kept-runs folder a Settings names (LLMOPS_LOADTEST_DIR, relative to the project)."""
    return (settings.root / str(settings.values["LLMOPS_LOADTEST_DIR"])).resolve()


def default_dir() -> Path:
    """LLMOPS_LOADTEST_DIR from the environment or .env, relative to the project (logs/loadtests)."""
    from ... import settings as stack_settings

    try:
        return dir_of(stack_settings.load(strict=False))
    except ConfigError:  # a broken .env is reported by whatever reads the key; results still go somewhere
        return (stack_settings.ROOT / "logs" / "loadtests").resolve()


def shown_path(path: Path) -> str:
    """A path as a person types it: relative to the current folder when it is inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def slug(name: str) -> str:
    """A name safe as the tail of a folder name (letters, digits, . _ -)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:60]
    return cleaned or "run"


def redact_argv(argv: list[str], secrets: tuple[str, ...] = ()) -> list[str]:
    """The command line with the value of --api-key, and any secret anywhere, replaced by [redacted]."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if arg == "--api-key":
            hide_next = True
        elif arg.startswith("--api-key="):
            arg = f"--api-key={REDACTED}"
        for secret in secrets:
            arg = redact(arg, secret)
        out.append(arg)
    return out


def _write_atomic(path: Path, text: str, secrets: tuple[str, ...] = ()) -> Path:
    """Write text so a reader never sees half a file; any secret in it is replaced first."""
    for secret in secrets:
        text = redact(text, secret)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def dump_json(path: Path, doc: dict, secrets: tuple[str, ...] = ()) -> Path:
    """Write a JSON document atomically, secrets removed."""
    return _write_atomic(Path(path), json.dumps(doc, indent=2) + "\n", secrets)


def write_text(path: Path, text: str, secrets: tuple[str, ...] = ()) -> Path:
    """Write a text file (a report) atomically, secrets removed."""
    return _write_atomic(Path(path), text, secrets)


def create_dir(root: Path, name: str, now: datetime | None = None) -> Path:
    """A new, empty `<timestamp>-<name>` folder under root (a suffix -2, -3... when the second is taken)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    root = Path(root)
    base = f"{stamp}-{slug(name)}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            path = root / (base if n == 1 else f"{base}-{n}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise ConfigError(f"--results-dir: cannot create a run folder in {root} ({exc.strerror or exc})") from None
    raise ConfigError(f"--results-dir: {root} already holds {base} and 998 more like it")


@dataclass
class StoredRun:
    """A run folder as read back: status complete, interrupted or incomplete (with the reason)."""

    name: str
    path: Path
    status: str
    reason: str = ""
    run: dict | None = None
    summary: dict | None = None
    files: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.status != "incomplete"


def _read_json(path: Path) -> dict:
    doc = json.loads(path.read_text(errors="replace"))
    if not isinstance(doc, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return doc


def _upgraded(summary: dict, requests: Path) -> dict:
    """The summary in the current format, counted again from the run's lines where an old format needs them."""
    return upgrade_summary(summary, read_records(requests)[0] if needs_records(summary) else None)


def load_run(path: Path) -> StoredRun:
    """Read a run folder; problems with its files make it incomplete, never an exception."""
    path = Path(path)
    stored = StoredRun(name=path.name, path=path, status="incomplete")
    try:
        stored.files = sorted(f for f in FILES if (path / f).is_file())
    except OSError as exc:
        stored.reason = f"unreadable folder: {exc.strerror or exc}"
        return stored
    if RUN_FILE in stored.files:
        try:
            stored.run = _read_json(path / RUN_FILE)
        except (OSError, ValueError) as exc:
            stored.reason = f"run.json is unreadable ({exc})"
    if SUMMARY_FILE not in stored.files:
        stored.reason = stored.reason or "no summary.json: the run crashed or is still running"
        return stored
    try:
        stored.summary = _upgraded(check_summary(_read_json(path / SUMMARY_FILE)), path / REQUESTS_FILE)
    except (OSError, ValueError) as exc:
        stored.summary = None
        stored.reason = f"summary.json is unreadable ({exc})"
        return stored
    stored.status = "interrupted" if stored.summary.get("interrupted") else "complete"
    return stored


def list_runs(root: Path, limit: int = 100) -> list[StoredRun]:
    """The run folders under root, newest first (names start with their UTC time)."""
    try:
        names = sorted((e.name for e in os.scandir(root) if RUN_NAME.match(e.name) and e.is_dir(follow_symlinks=False)),
                       reverse=True)
    except FileNotFoundError:
        return []
    return [load_run(Path(root) / name) for name in names[:limit]]


def read_records(path: Path) -> tuple[list[dict], int]:
    """The JSON lines of a requests.jsonl (in the current format) and how many were unreadable (a crash cuts the last)."""
    records: list[dict] = []
    bad = 0
    try:
        with open(path, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except ValueError:
                    bad += 1
                    continue
                if isinstance(doc, dict):
                    records.append(upgrade_record(doc))
                else:
                    bad += 1
    except FileNotFoundError:
        pass
    return records, bad


def resolve_ref(ref: str, root: Path) -> StoredRun:
    """A run named on the command line: a run folder, a summary JSON file, or a folder name under root."""
    candidate = Path(ref)
    if not candidate.exists() and RUN_NAME.match(ref):
        candidate = Path(root) / ref
    if candidate.is_file():
        try:
            summary = _upgraded(check_summary(_read_json(candidate)), candidate.parent / REQUESTS_FILE)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{ref}: not a load-test summary ({exc})") from None
        return StoredRun(name=candidate.stem, path=candidate.parent, status="complete", summary=summary,
                         files=[candidate.name])
    if candidate.is_dir():
        stored = load_run(candidate)
        if stored.summary is None:
            raise ConfigError(f"{ref}: incomplete run ({stored.reason})")
        return stored
    raise ConfigError(f"{ref}: no such run folder or summary file (runs are kept in {root})")


def headline(stored: StoredRun) -> dict:
    """The few figures the dashboard lists for a run; None where the run has none."""
    s, run = stored.summary or {}, stored.run or {}
    settings = run.get("settings") if isinstance(run.get("settings"), dict) else {}
    out: dict = {"name": stored.name, "status": stored.status, "reason": stored.reason,
                 "started_at": s.get("started_at") or run.get("started_at"),
                 "model": s.get("model") or run.get("model"), "kind": run.get("kind") or _kind(settings),
                 "report": REPORT_FILE in stored.files}
    if not stored.summary:
        return out

    def dig(*keys):
        node = s
        for k in keys:
            node = node.get(k) if isinstance(node, dict) else None
        return node if isinstance(node, int | float) and not isinstance(node, bool) else None

    out.update({
        "requests": dig("requests", "total"), "ok": dig("requests", "ok"), "error_ratio": dig("error_ratio"),
        "duration_s": dig("duration_s"), "requests_per_s": dig("throughput", "requests_per_s"),
        "output_tokens_per_s": dig("throughput", "output_tokens_per_s"),
        "latency_p50_s": dig("latency_s", "p50"), "latency_p95_s": dig("latency_s", "p95"),
        "ttft_p50_s": dig("ttft_s", "p50"), "knee_concurrency": dig("knee", "concurrency"),
        "verdict": s.get("verdict") if isinstance(s.get("verdict"), str) else None,
        "capacity": _capacity_headline(s.get("capacity")),
    })
    return out


def _capacity_headline(cap: object) -> dict | None:
    """A capacity run's answer in the few words the dashboard shows: the streams, the SLO, the line."""
    if not isinstance(cap, dict):
        return None
    number = lambda k: cap.get(k) if isinstance(cap.get(k), int) and not isinstance(cap.get(k), bool) else None  # noqa: E731
    text = lambda k: cap.get(k) if isinstance(cap.get(k), str) else None  # noqa: E731
    return {"max_concurrency": number("max_concurrency"), "broke_at": number("broke_at"), "slo": text("slo"),
            "message": text("message"), "complete": cap.get("complete") is True}


def _kind(settings: dict) -> str | None:
    if not settings:
        return None
    if settings.get("capacity"):
        return "capacity"
    if settings.get("sweep"):
        return "sweep"
    return "open loop" if settings.get("rate") or settings.get("burst") else "closed loop"
