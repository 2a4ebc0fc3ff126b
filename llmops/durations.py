"""Durations in the three dialects the stack reads, one function each; every one raises ValueError naming the text.

- go_seconds / parse_keep_alive: Ollama's keep_alive (a number of seconds or a Go duration such as "5m", "1h30m").
- promql_seconds / promql_duration: Prometheus durations ("5m", "1h30m", "500ms"), to seconds and back.
- cli_seconds: the traffic generator's flags ("30", "30s", "200ms", "2m", "1h").
"""
from __future__ import annotations

import math
import re

_GO = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PROMQL = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_PROMQL_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_CLI = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_CLI_UNIT = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: object, default: float) -> float:
    """Ollama's keep_alive in seconds: a number of seconds or a Go duration ("5m", "1h30m");
    negative means forever (math.inf), 0 unload at once, absent the default. Raises ValueError."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ValueError("keep_alive must be a duration or a number of seconds")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = go_seconds(value)
    else:
        raise ValueError("keep_alive must be a duration or a number of seconds")
    return math.inf if seconds < 0 else seconds


def go_seconds(text: str) -> float:
    """A Go duration, or a bare number of seconds as Ollama reads one, in seconds (may be negative)."""
    stripped = text.strip()
    sign = -1.0 if stripped.startswith("-") else 1.0
    body = stripped.lstrip("+-")
    try:
        return sign * float(body)  # "300" is seconds, as Ollama reads a bare number
    except ValueError:
        parts = _GO.findall(body)
        if not body or "".join(n + u for n, u in parts) != body:
            raise ValueError(f"keep_alive: time: invalid duration {text!r}") from None
        return sign * sum(float(n) * _GO_UNIT[u] for n, u in parts)


def promql_seconds(duration: str) -> float:
    """A Prometheus duration ('5m', '1h30m', '90s', '500ms') in seconds; ValueError names a bad one."""
    parts = _PROMQL.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"{duration!r} is not a duration like 5m, 90s or 1h30m")
    return sum(int(n) * _PROMQL_UNIT[u] for n, u in parts)


def promql_duration(value: float) -> str:
    """Seconds as a Prometheus duration with millisecond precision: 297.5 -> '297s500ms'."""
    millis = int(round(value * 1000))
    return f"{millis // 1000}s{millis % 1000}ms" if millis % 1000 else f"{millis // 1000}s"


def cli_seconds(text: str) -> float:
    """Seconds from `1.5`, `1.5s`, `200ms`, `2m` or `1h`."""
    match = _CLI.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30, 30s, 200ms or 2m")
    return float(match.group(1)) * _CLI_UNIT[match.group(2)]
