"""The summary document a run leaves: the percentiles it holds, and what a reader checks before using one."""
from __future__ import annotations

PERCENTILES = (50, 90, 95, 99)


def percentile(sorted_values, p: float) -> float | None:
    """The p-th percentile (0-100) of sorted values, linearly interpolated like numpy's default."""
    n = len(sorted_values)
    if not n:
        return None
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0-100, not {p}")
    rank = (n - 1) * p / 100
    low = int(rank)
    high = min(low + 1, n - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def distribution(values) -> dict:
    """count, mean, p50/p90/p95/p99 and max of a sample (None where empty): one latency part of a summary."""
    ordered = sorted(values)
    out: dict = {"count": len(ordered), "mean": sum(ordered) / len(ordered) if ordered else None}
    for p in PERCENTILES:
        out[f"p{p}"] = percentile(ordered, p)
    out["max"] = ordered[-1] if ordered else None
    return out


def check_summary(doc: object) -> dict:
    """The summary if it has what reports read; ValueError naming what is missing otherwise."""
    if not isinstance(doc, dict):
        raise ValueError("summary.json is not a JSON object")
    for key, kind in (("requests", dict), ("throughput", dict), ("latency_s", dict)):
        if not isinstance(doc.get(key), kind):
            raise ValueError(f"summary.json has no {key!r}")
    if not isinstance(doc["requests"].get("total"), int):
        raise ValueError("summary.json has no request count")
    return doc
