"""Exact request counts from LiteLLM's request counter, from the first request of every series.

`increase()` and `rate()` miss a series' first requests (there is no zero sample before its first
scrape) and extrapolate to the window's edges, so they neither count from zero nor give integers.
Here the counter is differenced on a fixed grid instead (docs/traffic-counting.md explains why
this is exact):

    step(t)  = last(t) - prev(t)   when the counter did not go down,
               last(t)             when it went down (a reset: it counts from zero again)
                                   or had no sample before (a new series: it counts from zero)
    count(W) = sum of step(t) over the grid points t = k * GRID in the window W

with last(t) the newest sample in (t - MEMORY, t] and prev(t) the same one GRID earlier. Because
prev(t) == last(t - GRID), the steps telescope: without resets the sum is exactly the counter's
growth over the window, plus the whole value of a series born inside it. Range selectors skip
staleness markers, so a failed scrape (or a short Prometheus restart) is bridged instead of being
mistaken for a new series.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import outcomes
from ..durations import promql_duration, promql_seconds

# A PromAPI Sample (labels, value) and a PromAPI: typed loosely, since the client lives in the dashboard above.
Sample = Any
PromAPI = Any

TOTAL = "litellm_proxy_total_requests_metric_total"
# Routes LiteLLM also counts in its request metrics that are not model calls.
NON_MODEL_ROUTES = "/metrics.*|/health.*|/v1/models|/models"
CANARY_PREFIX = "llmops-canary"  # the canary's User-Agent starts with this (probes.CANARY_USER_AGENT)
# LiteLLM's background health checks (general_settings.background_health_checks) are counted as
# requests too, under this key alias and route "None": real generations nobody sent.
HEALTH_CHECK_ALIAS = "litellm-internal-health-check"
REAL = f'route!~"{NON_MODEL_ROUTES}",user_agent!~"{CANARY_PREFIX}.*",api_key_alias!="{HEALTH_CHECK_ALIAS}"'

GRID = "5s"  # half the scrape interval (prometheus.yml: 10s), so one grid step never holds two samples
MEMORY = "5m"  # how far back a series' previous sample is looked for (Prometheus's own lookback); longer gaps read as new


def step_expr(selector: str = REAL, metric: str = TOTAL, grid: str = GRID, memory: str = MEMORY) -> str:
    """PromQL of one grid step's requests per series (see the module docstring)."""
    last = f"last_over_time({metric}{{{selector}}}[{memory}])"
    prev = f"last_over_time({metric}{{{selector}}}[{memory}] offset {grid})"
    # `+ 0` drops the metric name, which last_over_time keeps: both sides of `or` must label alike.
    return f"(({last} - {prev}) >= 0 or {last} + 0)"


def count_expr(window: str, by: Iterable[str] = ("status_code",), selector: str = REAL, metric: str = TOTAL,
               grid: str = GRID, memory: str = MEMORY) -> str:
    """PromQL of the exact requests in the window ending now (an instant query), summed by `by`.

    The subquery's range is the window less half a grid step: it then holds exactly window/grid grid
    points whether range boundaries are closed (Prometheus 2) or open (Prometheus 3) on the left.
    """
    labels = ", ".join(by)
    span = promql_duration(promql_seconds(window) - promql_seconds(grid) / 2)
    return f"sum by ({labels}) (sum_over_time({step_expr(selector, metric, grid, memory)}[{span}:{grid}]))"


def _count(value: float | None) -> int:
    # Every step is a difference of integer counter values: round only the float's representation.
    return int(round(value or 0.0))


def tally(samples: Iterable[Sample]) -> dict:
    """{"requests", "outcomes": {class: n}, "status_codes": {code: n}} from samples labelled status_code."""
    by_class = outcomes.empty_counts()
    by_status: dict[str, int] = {}
    for sample in samples:
        count = _count(sample.value)
        if count <= 0:
            continue
        code = str(sample.labels.get("status_code", ""))
        by_class[class_of(code)] += count
        by_status[code] = by_status.get(code, 0) + count
    return {"requests": sum(by_class.values()), "outcomes": by_class,
            "status_codes": dict(sorted(by_status.items()))}


def tally_by(samples: Iterable[Sample], label: str) -> dict[str, dict]:
    """tally() per value of `label` (e.g. requested_model)."""
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(str(sample.labels.get(label, "")), []).append(sample)
    return {key: tally(group) for key, group in sorted(groups.items())}


def real_requests(prom: PromAPI, window: str = "5m", by: Iterable[str] = ("status_code",)) -> list[Sample]:
    """The real requests (canary and non-model routes excluded) of the last window; raises MetricsUnavailable."""
    return prom.query(count_expr(window, by))


def failure_summary(counts: dict, window: str) -> str:
    """'3 of 18 requests failed in the last 5m: 3 client errors (HTTP 400)' style, or '' when none failed."""
    failed = [name for name in outcomes.CLASSES if name != outcomes.OK and counts["outcomes"].get(name)]
    if not failed:
        return ""
    codes = counts.get("status_codes") or {}
    parts = []
    for name in failed:
        seen = [c for c in codes if class_of(c) == name]
        http = f" (HTTP {', '.join(seen)})" if seen else ""
        parts.append(outcomes.describe(name, counts["outcomes"][name]) + http)
    total_failed = sum(counts["outcomes"][name] for name in failed)
    return f"{total_failed} of {counts['requests']} requests failed in the last {window}: {', '.join(parts)}"


def class_of(code: str) -> str:
    """The class of a status_code label value; one LiteLLM could not name is a server error."""
    try:
        return outcomes.classify(code if code not in ("", "None") else None)
    except ValueError:
        return outcomes.SERVER_ERROR
