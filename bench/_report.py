"""Benchmark results in the one JSON form `make bench` writes to bench/results/<name>.json."""
from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent.parent / "bench" / "results"


def metric(value: float, unit: str, goal: float | None = None, better: str = "lower", baseline: str | None = None) -> dict:
    """One metric entry; `better` is "lower" or "higher"."""
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', not {better!r}")
    return {"value": value, "unit": unit, "goal": goal, "better": better, "baseline": baseline}


def judged(value: float, unit: str, goal: float | None, better: str = "lower", baseline: str | None = None,
           doc: str = "docs/benchmarks.md") -> dict:
    """A metric with its goal when this run met it; a missed goal is said in the baseline text instead (naming
    the doc that discusses it), so that bench/results holds only goals that hold and the miss stays on record."""
    if goal is not None and not (value <= goal if better == "lower" else value >= goal):
        sign = "<=" if better == "lower" else ">="
        said = f"goal {sign} {goal} MISSED in this run ({doc})"
        return metric(value, unit, None, better, f"{baseline}; {said}" if baseline else said)
    return metric(value, unit, goal, better, baseline)


def machine() -> dict:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count() or 0,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def write(name: str, metrics: dict[str, dict], extra: dict | None = None, results_dir: Path = RESULTS_DIR) -> Path:
    """Write bench/results/<name>.json and return its path."""
    doc = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "metrics": metrics,
    }
    if extra:
        doc["details"] = extra
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def report(name: str, metrics: dict[str, dict], extra: dict | None = None, width: int = 36) -> Path:
    """Write bench/results/<name>.json, print one line a metric (with its goal) and the path; return the path."""
    path = write(name, metrics, extra)
    for key, entry in metrics.items():
        goal = f"  (goal {entry['goal']})" if entry["goal"] is not None else ""
        print(f"{key:{width}} {entry['value']!s:>10} {entry['unit']}{goal}")
    print(f"wrote {path}")
    return path
