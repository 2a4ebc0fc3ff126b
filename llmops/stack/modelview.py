"""Models seen two ways: routed by the proxy's config, and present on the backends; each mismatch gets one line."""
from __future__ import annotations

from .. import health as probes
from ..errors import ConfigError
from ..proxy import config as proxyconf

NOT_ROUTED = "present on the backend, not routed by the proxy"
NOT_PRESENT = "routed by the proxy, absent from the backend"


def _base(name: str) -> str:
    """Ollama treats `name` and `name:latest` as one model."""
    return name if ":" in name else f"{name}:latest"


def route_note(routed: bool, present: bool, backends_known: bool = True, routes_known: bool = True) -> str | None:
    """The mismatch line for one model, or None when the proxy and the backends agree (or cannot be told)."""
    if present and not routed and routes_known:
        return NOT_ROUTED
    if routed and not present and backends_known:
        return NOT_PRESENT
    return None


def compare(routed: dict[str, str], present: dict[str, list[str]], backends_known: bool = True) -> list[dict]:
    """One row per model: name, mode (from the config), routed, present_on, and the mismatch note."""
    by_base = {_base(n): n for n in present}
    names = list(routed) + [n for n in present if _base(n) not in {_base(r) for r in routed}]
    rows = []
    for name in names:
        on = present.get(by_base.get(_base(name), name), [])
        is_routed = name in routed
        rows.append({"name": name, "mode": routed.get(name), "routed": is_routed, "present_on": on,
                     "note": route_note(is_routed, bool(on), backends_known)})
    return rows


def stack_models(settings, session, timeout: float = 3.0) -> dict:
    """The config's routes against every backend's /api/tags (for `make status`); never raises for a dead part."""
    try:
        routed = proxyconf.routed_models(proxyconf.validate(settings.litellm_config_path))
        config_error = None
    except ConfigError as exc:
        routed, config_error = {}, str(exc)
    present: dict[str, list[str]] = {}
    unreachable = []
    for url in settings.backend_urls:
        result = probes.probe_backend(session, url, timeout)
        if result.status != probes.HEALTHY and not result.data.get("present"):
            if result.error != "empty":
                unreachable.append(probes.host_port(url))
            continue
        for model in result.data.get("present") or []:
            present.setdefault(str(model["name"]), []).append(probes.host_port(url))
    known = not unreachable or bool(present)
    return {"models": compare(routed, present, backends_known=known), "unreachable": unreachable,
            "config_error": config_error}


STATUS_HEADER = f"{'MODEL':<24}{'MODE':<11}{'ROUTED':<8}{'PRESENT ON':<24}CHECK"


def status_lines(view: dict) -> list[str]:
    """The models section of `make status`: one line per model, the mismatches named."""
    lines = []
    if view.get("config_error"):
        lines.append(f"proxy config: {view['config_error']}")
    for row in view["models"]:
        where = ", ".join(row["present_on"]) if row["present_on"] else "-"
        mode = row["mode"] or "-"
        state = "MISMATCH" if row["note"] else ("ok" if row["present_on"] else "unknown")
        line = f"{row['name']:<24}{mode:<11}{'yes' if row['routed'] else 'no':<8}{where:<24}{state}"
        lines.append(line + (f"  {row['note']}" if row["note"] else ""))
    if view.get("unreachable"):
        lines.append(f"(backend unreachable: {', '.join(view['unreachable'])}; presence unknown there)")
    return lines
