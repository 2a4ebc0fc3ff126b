"""Recorded load-test runs for tests: run folders written by hand with known figures."""
from __future__ import annotations

import json
from pathlib import Path

from llmops.traffic import results


def dist(p50: float, scale: float = 1.0) -> dict:
    """A latency distribution with p90/p95/p99 at fixed multiples of p50."""
    return {"count": 10, "mean": p50 * scale, "p50": p50, "p90": p50 * 1.5, "p95": p50 * 1.75, "p99": p50 * 2.0,
            "max": p50 * 2.5}


def summary(rps: float = 10.0, p50: float = 0.2, ttft: float = 0.05, itl: float = 0.01, total: int = 20,
            ok: int | None = None, tokens_per_s: float = 100.0, **extra) -> dict:
    """A summary.json document shaped as the generator writes it (format 2)."""
    ok = total if ok is None else ok
    doc = {
        "tool": "llmops-traffic/0.1", "started_at": "2026-12-01T10:00:00+00:00", "url": "http://127.0.0.1:8000",
        "model": "smollm2:135m", "seed": 1, "interrupted": False, "warmup": {"requests": 0, "ok": 0},
        **results.outcome_counts({"ok": ok, "server_error": total - ok}, {"http_503": total - ok} if total - ok else {}),
        "format": results.SUMMARY_FORMAT,
        "duration_s": ok / rps if rps else 0.0,
        "throughput": {"requests_per_s": rps, "output_tokens_per_s": tokens_per_s, "total_tokens_per_s": tokens_per_s * 1.2},
        "tokens": {"prompt": 70, "completion": 200, "source": "usage"},
        "latency_s": dist(p50), "ttft_s": dist(ttft), "itl_s": dist(itl), "tpot_s": dist(itl * 1.1), "goodput": None,
        "config": {}, "exit_code": 0, "verdict": f"ok: {ok}/{total} requests succeeded",
    }
    doc.update(extra)
    return doc


def records(n: int = 20, latency: float = 0.2, gap: float = 0.1, **extra) -> list[dict]:
    """Request lines: n requests started `gap` apart, all ok."""
    return [{"id": i + 1, "phase": "measure", "status": "ok", "detail": "ok", "http_status": 200, "start_s": round(i * gap, 6),
             "latency_s": latency, "ttft_s": latency / 4, "completion_tokens": 10, **extra} for i in range(n)]


def write_run(root: Path, name: str, summary_doc: dict | None = None, lines: list[dict] | None = None,
              run: dict | None = None, report: bool = True) -> Path:
    """A run folder as the generator leaves it (report drawn unless told not to)."""
    path = Path(root) / name
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps(run or {"format": 1, "name": name, "kind": "closed loop",
                                                      "command": ["scripts/traffic_generator.py", "--max", "20"]}))
    (path / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (lines or [])))
    if summary_doc is not None:
        (path / "summary.json").write_text(json.dumps(summary_doc))
        if report:
            results.write_report(path)
    return path
