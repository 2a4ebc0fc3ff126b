"""A small client for Prometheus's HTTP API: instant and range queries, alerts, readiness."""
from __future__ import annotations

import math
from dataclasses import dataclass

import requests

from ..errors import MetricsUnavailable

__all__ = ["MetricsUnavailable", "PromAPI", "Sample", "Series"]


@dataclass(frozen=True)
class Sample:
    """One series of an instant query: its labels and value (None for NaN/Inf)."""

    labels: dict
    value: float | None


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and [(unix_seconds, value or None)]."""

    labels: dict
    points: list


def _number(text: str) -> float | None:
    # Prometheus encodes NaN/+Inf as strings; JSON has no NaN, so the dashboard shows a gap.
    value = float(text)
    return value if math.isfinite(value) else None


class PromAPI:
    """Prometheus HTTP API client; every failure is raised as MetricsUnavailable."""

    def __init__(self, base_url: str, session=None, timeout: float = 3.0):
        self.base_url = base_url.rstrip("/")
        self.session = session if session is not None else requests.Session()
        self.timeout = timeout

    def _get(self, path: str, params: dict | None = None) -> dict:
        url = f"{self.base_url}{path}"
        try:
            response = self.session.get(url, params=params, timeout=self.timeout)
        except requests.Timeout as exc:
            raise MetricsUnavailable(f"metrics unavailable: Prometheus at {self.base_url} timed out") from exc
        except requests.RequestException as exc:
            raise MetricsUnavailable(f"metrics unavailable: Prometheus at {self.base_url} unreachable") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise MetricsUnavailable(
                f"metrics unavailable: Prometheus answered HTTP {response.status_code} without JSON"
            ) from exc
        if response.status_code != 200 or body.get("status") != "success":
            error = body.get("error") or f"HTTP {response.status_code}"
            raise MetricsUnavailable(f"Prometheus query failed: {error}")
        return body.get("data") or {}

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """Instant query; returns one Sample per series (a scalar result gives one unlabelled sample)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        kind, result = data.get("resultType"), data.get("result") or []
        if kind == "scalar":
            return [Sample({}, _number(result[1]))]
        return [Sample(item.get("metric", {}), _number(item["value"][1])) for item in result]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """Range query over [start, end] every step seconds."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        data = self._get("/api/v1/query_range", params)
        return [
            Series(item.get("metric", {}), [(float(t), _number(v)) for t, v in item.get("values", [])])
            for item in data.get("result") or []
        ]

    def alerts(self) -> list[dict]:
        """Every active alert (pending and firing) as Prometheus reports it."""
        return list(self._get("/api/v1/alerts").get("alerts") or [])

    def rules(self) -> list[dict]:
        """Every rule group as /api/v1/rules gives it (alerting rules carry their unrendered annotations)."""
        return list(self._get("/api/v1/rules").get("groups") or [])

    def scalar(self, expr: str, at: float | None = None) -> float | None:
        """Sum of an instant query's values; None when it has no finite value."""
        values = [s.value for s in self.query(expr, at) if s.value is not None]
        return sum(values) if values else None
