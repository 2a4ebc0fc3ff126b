"""Ollama's keep_alive durations (seconds, or Go durations like "5m" and "1h30m"), below settings and the backend."""
from __future__ import annotations

import math
import re

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


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
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        try:
            seconds = sign * float(body)  # "300" is seconds, as Ollama reads a bare number
        except ValueError:
            parts = _DURATION.findall(body)
            if not body or "".join(n + u for n, u in parts) != body:
                raise ValueError(f"keep_alive: time: invalid duration {value!r}") from None
            seconds = sign * sum(float(n) * _UNIT[u] for n, u in parts)
    else:
        raise ValueError("keep_alive must be a duration or a number of seconds")
    return math.inf if seconds < 0 else seconds
