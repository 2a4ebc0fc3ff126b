"""The numbers a report draws, from a run's summary and its per-request lines (extra fields ignored)."""
from __future__ import annotations

import math
from collections import Counter, defaultdict

from ...outcomes import GENERATOR_CLASSES
from .summary import CANCELLED, percentile

NICE_STEPS = (0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
MAX_TIME_BINS = 60
HISTOGRAM_BINS = 30
PERCENTILE_ROWS = (("latency_s", "end to end"), ("ttft_s", "time to first token"),
                   ("itl_s", "inter-token"), ("tpot_s", "time per output token"))
SHOWN_PERCENTILES = ("p50", "p90", "p99")


def _num(value) -> float | None:
    """A finite number, or None (JSON from other versions may hold anything)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _measured(records: list[dict]) -> list[dict]:
    """The counted requests: warmup lines and requests the run cancelled itself are not part of the result."""
    return [r for r in records if r.get("phase", "measure") != "warmup" and r.get("status") != CANCELLED
            and _num(r.get("start_s")) is not None]


def bin_width(span: float, max_bins: int = MAX_TIME_BINS) -> float:
    """A round bin width giving at most `max_bins` bins over `span` seconds."""
    for step in NICE_STEPS:
        if span / step <= max_bins:
            return step
    return math.ceil(span / max_bins / 3600) * 3600


def span(records: list[dict]) -> float:
    """Seconds from the first measured start to the last measured end."""
    rows = _measured(records)
    if not rows:
        return 0.0
    t0 = min(_num(r["start_s"]) for r in rows)
    return max(_num(r["start_s"]) + (_num(r.get("latency_s")) or 0.0) for r in rows) - t0


def timeline(records: list[dict], width: float | None = None) -> dict:
    """Requests by start time and outcome, and output tokens/s by completion time, in round bins."""
    rows = _measured(records)
    if not rows:
        return {"bin_s": None, "t": [], "outcomes": {}, "tokens_per_s": []}
    t0 = min(_num(r["start_s"]) for r in rows)
    ends = [_num(r["start_s"]) + (_num(r.get("latency_s")) or 0.0) for r in rows]
    width = width or bin_width(max(max(ends) - t0, 1e-9))
    n = int((max(ends) - t0) // width) + 1
    outcomes: dict[str, list[int]] = defaultdict(lambda: [0] * n)
    tokens = [0.0] * n
    for r, end in zip(rows, ends, strict=True):
        status = str(r.get("status") or "unknown")
        outcomes[status][min(int((_num(r["start_s"]) - t0) // width), n - 1)] += 1
        if status == "ok":
            tokens[min(int((end - t0) // width), n - 1)] += _num(r.get("completion_tokens")) or 0.0
    rank = {name: i for i, name in enumerate(GENERATOR_CLASSES)}
    ordered = dict(sorted(outcomes.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))
    return {"bin_s": width, "t": [round(i * width, 6) for i in range(n)], "outcomes": ordered,
            "tokens_per_s": [round(x / width, 6) for x in tokens]}


def histogram(values: list[float], bins: int = HISTOGRAM_BINS, top: float | None = None) -> dict:
    """Counts of values in `bins` equal bins from 0 to `top` (default: the largest value)."""
    if not values:
        return {"edges": [], "counts": []}
    top = top if top is not None else max(values)
    top = top if top > 0 else 1e-6
    width = top / bins
    counts = [0] * bins
    for v in values:
        counts[min(int(v / width), bins - 1)] += 1
    return {"edges": [round(i * width, 9) for i in range(bins + 1)], "counts": counts}


def ok_latencies(records: list[dict]) -> list[float]:
    """End-to-end seconds of the measured requests that succeeded."""
    return [x for r in _measured(records) if r.get("status") == "ok" and (x := _num(r.get("latency_s"))) is not None]


def percentiles(summary: dict) -> dict:
    """p50/p90/p99 of each latency kind, as the summary holds them (seconds; None where not measured)."""
    out = {}
    for key, label in PERCENTILE_ROWS:
        d = summary.get(key) if isinstance(summary.get(key), dict) else {}
        out[key] = {"label": label, **{p: _num(d.get(p)) for p in SHOWN_PERCENTILES}}
    return out


def per_model(records: list[dict]) -> list[dict]:
    """Count, p50/p95 latency and p50 TTFT per model, when the lines name more than one model."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in _measured(records):
        if isinstance(r.get("model"), str):
            groups[r["model"]].append(r)
    if len(groups) < 2:
        return []
    out = []
    for model, rows in sorted(groups.items()):
        lat = sorted(ok_latencies(rows))
        ttft = sorted(x for r in rows if r.get("status") == "ok" and (x := _num(r.get("ttft_s"))) is not None)
        out.append({"model": model, "requests": len(rows), "ok": sum(r.get("status") == "ok" for r in rows),
                    "latency_p50_s": percentile(lat, 50), "latency_p95_s": percentile(lat, 95),
                    "ttft_p50_s": percentile(ttft, 50)})
    return out


def per_priority(summary: dict) -> list[dict]:
    """Requests by outcome and TTFT and latency p50/p95 per priority class, from the summary's "priorities" part
    (most urgent first); [] for a run that sent one class or none, or was kept before the part existed."""
    part = summary.get("priorities")
    if not isinstance(part, dict) or len(part) < 2:
        return []
    out = []
    for key, m in part.items():
        if not isinstance(m, dict):
            continue
        req = m.get("requests") if isinstance(m.get("requests"), dict) else {}
        lat = m.get("latency_s") if isinstance(m.get("latency_s"), dict) else {}
        ttft = m.get("ttft_s") if isinstance(m.get("ttft_s"), dict) else {}
        counts = m.get("outcomes") if isinstance(m.get("outcomes"), dict) else {}
        out.append({"priority": str(key), "share": _num(m.get("share")), "requests": _num(req.get("total")),
                    "outcomes": {k: int(n) for k, n in counts.items() if k in GENERATOR_CLASSES and _num(n)},
                    "ttft_p50_s": _num(ttft.get("p50")), "ttft_p95_s": _num(ttft.get("p95")),
                    "latency_p50_s": _num(lat.get("p50")), "latency_p95_s": _num(lat.get("p95"))})
    return sorted(out, key=lambda r: (int(r["priority"]) if r["priority"].isdigit() else 1 << 30, r["priority"]))


def sweep(summary: dict) -> dict | None:
    """Throughput and p50/p95 latency against concurrency, and the knee, for a sweep run."""
    levels = summary.get("sweep")
    if not isinstance(levels, list) or not levels:
        return None
    rows = []
    for lvl in levels:
        if not isinstance(lvl, dict):
            continue
        thr = lvl.get("throughput") if isinstance(lvl.get("throughput"), dict) else {}
        lat = lvl.get("latency_s") if isinstance(lvl.get("latency_s"), dict) else {}
        rows.append({"concurrency": _num(lvl.get("concurrency")), "requests_per_s": _num(thr.get("requests_per_s")),
                     "output_tokens_per_s": _num(thr.get("output_tokens_per_s")),
                     "latency_p50_s": _num(lat.get("p50")), "latency_p95_s": _num(lat.get("p95")),
                     "error_ratio": _num(lvl.get("error_ratio"))})
    knee = summary.get("knee") if isinstance(summary.get("knee"), dict) else {}
    return {"levels": rows, "knee_concurrency": _num(knee.get("concurrency")),
            "knee_message": knee.get("message") if isinstance(knee.get("message"), str) else None}


RATIO_METRICS = ("errors", "goodput")


def capacity(summary: dict) -> dict | None:
    """A capacity run's answer, and each bound's figure against concurrency with its limit (None for other runs)."""
    cap = summary.get("capacity")
    if not isinstance(cap, dict) or not isinstance(cap.get("levels"), list):
        return None
    bounds: dict[str, dict] = {}
    levels = []
    for lvl in cap["levels"]:
        if not isinstance(lvl, dict) or _num(lvl.get("concurrency")) is None:
            continue
        values = {}
        for check in lvl.get("checks") or ():
            if not isinstance(check, dict) or not isinstance(check.get("metric"), str):
                continue
            metric = check["metric"]
            bounds.setdefault(metric, {"metric": metric, "bound": str(check.get("bound")),
                                       "limit": _num(check.get("limit")), "ratio": metric in RATIO_METRICS})
            values[metric] = _num(check.get("value"))
        levels.append({"concurrency": _num(lvl["concurrency"]), "values": values,
                       "within_slo": bool(lvl.get("within_slo")), "requests": lvl.get("requests")})
    text = lambda key: cap.get(key) if isinstance(cap.get(key), str) else None  # noqa: E731
    return {"max_concurrency": _num(cap.get("max_concurrency")), "broke_at": _num(cap.get("broke_at")),
            "slo": text("slo"), "message": text("message"), "bounds": list(bounds.values()),
            "levels": sorted(levels, key=lambda lv: lv["concurrency"]),
            "warnings": [w for w in cap.get("warnings") or () if isinstance(w, str)]}


def report_data(summary: dict, records: list[dict], run: dict | None = None, bad_lines: int = 0) -> dict:
    """Everything one run's page draws, as JSON-ready data."""
    lat = ok_latencies(records)
    return {
        "summary": summary, "run": run or {},
        "timeline": timeline(records),
        "histogram": histogram(lat),
        "percentiles": percentiles(summary),
        "sweep": sweep(summary),
        "capacity": capacity(summary),
        "per_model": per_model(records),
        "per_priority": per_priority(summary),
        "records": {"lines": len(records), "unreadable": bad_lines,
                    "statuses": dict(Counter(str(r.get("status")) for r in _measured(records)))},
    }
