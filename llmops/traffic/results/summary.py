"""The summary document and request lines a run leaves: their counts by outcome class, their percentiles,
what a reader checks before using one, and how a run kept in the earlier format is read.

Format 2 (December 2026) counts every request in one of `outcomes.GENERATOR_CLASSES` (`requests`,
`outcomes`, `failures` by class) and keeps the finer status in `details`; a request line's `status` is its
class and `detail` its finer status. Requests the run cancelled itself are in `requests.cancelled` only.
Format 1 (no `format` key) counted the generator's own twelve statuses, cancelled ones inside the total.
"""
from __future__ import annotations

from ... import outcomes

SUMMARY_FORMAT = 2  # summary.json's `format` (run.json has its own)
PERCENTILES = (50, 90, 95, 99)
CANCELLED = "cancelled"  # a request line's status when the run cancelled it (Ctrl-C): in no class


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


def outcome_counts(by_class: dict[str, int], details: dict[str, int], cancelled: int = 0) -> dict:
    """The summary's counting part: requests by class, failures and details, and the error ratio (failures
    other than rate limits over counted requests). Requests the run cancelled are reported, never counted."""
    classes = outcomes.empty_counts(outcomes.GENERATOR_CLASSES)
    for name, n in by_class.items():
        classes[name] = classes.get(name, 0) + n
    total, ok = sum(classes.values()), classes[outcomes.OK]
    failed = total - ok
    return {
        "requests": {"total": total, "ok": ok, "failed": failed, "timed_out": classes[outcomes.TIMEOUT],
                     "rate_limited": classes[outcomes.RATE_LIMITED], "cancelled": cancelled},
        "outcomes": classes,
        "failures": {k: v for k, v in classes.items() if k != outcomes.OK and v},
        "details": {k: v for k, v in sorted(details.items()) if k != outcomes.OK},
        "error_ratio": (failed - classes[outcomes.RATE_LIMITED]) / total if total else 0.0,
    }


def _class_of(detail: object, http_status: object = None) -> str | None:
    """The class of a detail in a kept file (None when no version of the generator wrote it)."""
    try:
        return outcomes.classify_request(str(detail), http_status if isinstance(http_status, int) else None)
    except ValueError:
        return None


def upgrade_record(line: dict) -> dict:
    """A request line in format 2: a format-1 line's status becomes its detail and its class the status."""
    if "detail" in line or not isinstance(line.get("status"), str):
        return line
    old, code = line["status"], line.get("http_status")
    detail = "generator_error" if old == "client_error" else old  # format 1's "a bug in this client"
    if old in ("http_4xx", "http_5xx", outcomes.RATE_LIMITED) and isinstance(code, int):
        detail = outcomes.http_detail(code)  # what format 2 writes: the status code itself
    cls = CANCELLED if old == CANCELLED else _class_of(detail, line.get("http_status"))
    return {**line, "status": cls or old, "detail": detail}


def upgrade_summary(doc: dict, records: list[dict] | None = None) -> dict:
    """A summary in format 2 (and its per-level and per-model parts); format 2 is returned as it is.

    Format 1 filed an HTTP 408 among its 4xx: with the run's request lines (in format 2, as read_records gives
    them) each part is counted again from its lines, where the status code is kept; without them a 4xx stays
    a client error."""
    if isinstance(doc.get("format"), int) and doc["format"] >= SUMMARY_FORMAT:
        return doc
    measured = [r for r in records or () if r.get("phase", "measure") != "warmup" and r.get("status") != CANCELLED]
    out = {**_upgrade_counts(doc, measured), "format": SUMMARY_FORMAT, "upgraded_from": doc.get("format", 1)}
    if isinstance(doc.get("sweep"), list):
        out["sweep"] = [_upgrade_counts(x, [r for r in measured if r.get("concurrency") == x.get("concurrency")])
                        if isinstance(x, dict) else x for x in doc["sweep"]]
    if isinstance(doc.get("models"), dict):
        out["models"] = {k: _upgrade_counts(v, [r for r in measured if r.get("model") == k])
                         if isinstance(v, dict) else v for k, v in doc["models"].items()}
    return out


def needs_records(doc: dict) -> bool:
    """Whether upgrade_summary() needs the request lines to count this summary right (a format-1 4xx)."""
    return not isinstance(doc.get("format"), int) and "http_4xx" in (doc.get("failures") or {})


def _upgrade_counts(part: dict, lines: list[dict]) -> dict:
    """Format 1's counts (statuses in `failures`, cancelled inside `requests.total`) as format 2's; from the
    part's request lines when they are all there (as many as it counted), else from its statuses."""
    req = part.get("requests")
    if not isinstance(req, dict) or not isinstance(req.get("total"), int):
        return part
    failures = part.get("failures") if isinstance(part.get("failures"), dict) else {}
    cancelled = req.get("cancelled") if isinstance(req.get("cancelled"), int) else 0
    by_class: dict[str, int] = {}
    details: dict[str, int] = {}
    if len(lines) == req["total"] - cancelled:
        pairs = [(str(r.get("status")), str(r.get("detail"))) for r in lines]
    else:
        pairs = [(outcomes.OK, outcomes.OK)] * (req.get("ok") or 0)
        for old, n in failures.items():
            if isinstance(n, int) and old != CANCELLED:
                line = upgrade_record({"status": old})
                pairs += [(line["status"], line["detail"])] * n
    for cls, detail in pairs:
        cls = cls if cls in outcomes.GENERATOR_CLASSES else outcomes.SERVER_ERROR  # a status no generator wrote
        by_class[cls] = by_class.get(cls, 0) + 1
        details[detail] = details.get(detail, 0) + 1
    counts = outcome_counts(by_class, details, cancelled)
    # The ratio as the run judged it (format 1 left cancellations out of it too).
    ratio = part.get("error_ratio")
    return {**part, **counts, "error_ratio": ratio if isinstance(ratio, int | float) else counts["error_ratio"]}
