"""The overall verdict: component results in, healthy/degraded/down and a one-line reason out (pure)."""
from __future__ import annotations

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"
_RANK = {HEALTHY: 0, DEGRADED: 1, DOWN: 2}


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _pending(component: dict | None) -> bool:
    return not component or component.get("error") == "pending"


def _proxy_issue(proxy: dict, backend_down: bool) -> tuple[str, str]:
    error, detail = proxy.get("error", ""), proxy.get("detail", "")
    if error == "auth":
        reason = f"proxy {detail}; check LITELLM_MASTER_KEY in .env"
    elif error == "timeout":
        reason = f"proxy did not answer /v1/models in time ({detail}): requests will likely fail"
    elif error == "offline" or proxy.get("status") == "offline":
        reason = "proxy is unreachable: no requests can be served"
    elif error == "empty":
        reason = "proxy lists no models: requests cannot be routed"
    else:
        reason = f"proxy unhealthy: {detail}"
    if backend_down:
        reason += "; the backend is unreachable too"
    return DOWN, reason


def _backend_issue(proxy: dict, ollama: dict) -> tuple[str, str, bool] | None:
    """(severity, reason, every backend down) when a backend is not healthy, else None."""
    backends = ollama.get("backends") or []
    down = [b for b in backends if b.get("status") != HEALTHY and not _pending(b)]
    if not down:
        return None
    if len(down) == len(backends):
        models = len(proxy.get("models") or [])
        if all(b.get("error") == "empty" for b in down):
            return DEGRADED, "the backend answers but has no models: requests will fail", True
        what = "the backend is" if len(backends) == 1 else f"all {len(backends)} backends are"
        kinds = {b.get("error") for b in down}
        if kinds <= {"offline", "", None}:
            how = "unreachable"
        elif kinds == {"timeout"}:
            how = "not answering"
        else:
            how = "failing"
        if how != "unreachable" and len(down) == 1:
            how += f" ({down[0].get('detail', '')})"
        return DEGRADED, f"proxy lists {_plural(models, 'model')} but {what} {how}: requests will fail", True
    names = ", ".join(b.get("backend", "?") for b in down)
    return DEGRADED, f"{len(down)} of {len(backends)} backends down ({names}): less capacity, some requests may fail", False


def decide(components: dict[str, dict]) -> tuple[str, str]:
    """Return (overall, reason) from contract-shaped component dicts (proxy, ollama, prometheus, traffic, canary,
    alertmanager and redis: judged only when enabled)."""
    proxy = components.get("proxy") or {}
    ollama = components.get("ollama") or {}
    prometheus = components.get("prometheus") or {}
    traffic = components.get("traffic") or {}
    canary = components.get("canary") or {}

    if _pending(proxy):
        return DEGRADED, "starting: waiting for the first probe results"

    issues: list[tuple[str, str]] = []
    backend = None if _pending(ollama) else _backend_issue(proxy, ollama)
    if proxy.get("status") != HEALTHY:
        issues.append(_proxy_issue(proxy, bool(backend and backend[2])))
    elif backend:
        issues.append(backend[:2])
    if canary.get("enabled", True) and not _pending(canary) and canary.get("status") != HEALTHY and not issues:
        # A failed canary adds information only when the proxy and backend look fine.
        issues.append((DEGRADED, f"canary request through the proxy failed: {canary.get('detail', '')}"))
    if traffic.get("status") == "unhealthy":
        issues.append((DEGRADED, f"real requests are failing: {traffic.get('detail', '')}"))
    if not _pending(prometheus) and prometheus.get("status") != HEALTHY:
        healthy_rest = "" if issues else "; proxy and backend are healthy"
        issues.append((DEGRADED, f"Prometheus is down: metrics unavailable{healthy_rest}"))

    alertmanager = components.get("alertmanager") or {}
    if alertmanager.get("enabled") and not _pending(alertmanager) and alertmanager.get("status") != HEALTHY:
        issues.append((DEGRADED, f"Alertmanager is down: alerts cannot be delivered ({alertmanager.get('detail', '')})"))
    redis = components.get("redis") or {}
    if redis.get("enabled") and not _pending(redis) and redis.get("status") != HEALTHY:
        issues.append((DEGRADED, "Redis is down: the proxy's workers cannot share the priority queue, so requests "
                                 f"pass unqueued ({redis.get('detail', '')})"))

    if not issues:
        models = len(proxy.get("models") or [])
        backends = ollama.get("backends") or []
        up = sum(1 for b in backends if b.get("status") == HEALTHY)
        parts = [f"proxy lists {_plural(models, 'model')}", f"{up} of {_plural(len(backends), 'backend')} up"]
        if canary.get("enabled", True) and canary.get("status") == HEALTHY:
            parts.append("canary ok")
        # Client errors and 429s do not make the stack unhealthy, but a reason that hid them would be a
        # false all-clear: name each class and its count.
        failures = traffic.get("failure_summary") if traffic.get("status") == HEALTHY else ""
        return HEALTHY, "all healthy: " + ", ".join(parts) + (f"; {failures}" if failures else "")

    issues.sort(key=lambda issue: -_RANK[issue[0]])
    overall, reason = issues[0]
    if len(issues) > 1:
        reason += f" (+{len(issues) - 1} more: {issues[1][1]})"
    return overall, reason
