"""The dashboard, model by model: per-model traffic rows from Prometheus, and the charts' model filter."""
from __future__ import annotations

import re

from .. import outcomes
from ..errors import BadModel
from ..proxy import counts
from ..stack import modelview
from .promapi import MetricsUnavailable, PromAPI

TOTAL = counts.TOTAL
REAL = counts.REAL  # the one real-traffic selector: canary, health checks and non-model routes left out
EMBEDDING_ROUTES = ".*embeddings"
ALL = "all"
SHARED = ("inflight",)  # charts of the one queue every model shares: not filtered by model


def _window_count(expr: str, seconds: int) -> str:
    """Requests counted exactly over the window: the counter's rise, or its whole value for a series born
    inside the window (increase() would miss its first requests) or one reset by a restart."""
    return f"(({expr} - {expr} offset {seconds}s) >= 0) or {expr}"


def queries(seconds: int) -> dict[str, str]:
    """PromQL per figure, each by requested_model (and status_code for the counts)."""
    rate = f"{seconds}s"
    latency = "litellm_request_total_latency_metric_bucket"
    ttft = "litellm_llm_api_time_to_first_token_metric_bucket"
    embeddings = f'{TOTAL}{{{REAL},route=~"{EMBEDDING_ROUTES}"}}'
    return {
        "counts": f"sum by (requested_model, status_code) ({_window_count(f'{TOTAL}{{{REAL}}}', seconds)})",
        "embedding_requests": f"sum by (requested_model) ({_window_count(embeddings, seconds)})",
        "p50_s": f"histogram_quantile(0.5, sum by (requested_model, le) (rate({latency}[{rate}])))",
        "p95_s": f"histogram_quantile(0.95, sum by (requested_model, le) (rate({latency}[{rate}])))",
        "ttft_p50_s": f"histogram_quantile(0.5, sum by (requested_model, le) (rate({ttft}[{rate}])))",
        "fallbacks": f"sum by (requested_model) ({_window_count('litellm_deployment_successful_fallbacks_total', seconds)})",
        "output_tokens_per_s": f"sum by (requested_model) (rate(litellm_output_tokens_metric_total[{rate}]))",
        "input_tokens_per_s": f"sum by (requested_model) (rate(litellm_input_tokens_metric_total[{rate}]))",
    }


def traffic(prom: PromAPI, window: str, seconds: int) -> dict:
    """Per-model requests, outcomes by class, p50/p95, TTFT, tokens/s and embedding requests/s over the window."""
    doc = {"available": True, "detail": "", "window": window, "models": {}}
    try:
        found = {name: prom.query(expr) for name, expr in queries(seconds).items()}
    except MetricsUnavailable as exc:
        return {**doc, "available": False, "detail": str(exc)}
    models: dict[str, dict] = {}

    def row(model: str) -> dict:
        return models.setdefault(model, {"requests": 0, "outcomes": outcomes.empty_counts(),
                                         "p50_s": None, "p95_s": None, "ttft_p50_s": None,
                                         "output_tokens_per_s": None, "embedding_requests": 0,
                                         "embeddings_per_s": None, "fallbacks": 0})

    for sample in found["counts"]:
        model = sample.labels.get("requested_model")
        if not model or sample.value is None:
            continue
        n = int(round(sample.value))
        entry = row(model)
        entry["requests"] += n
        entry["outcomes"][counts.class_of(str(sample.labels.get("status_code", "")))] += n
    for sample in found["embedding_requests"]:
        model = sample.labels.get("requested_model")
        if model and sample.value:
            row(model)["embedding_requests"] = int(round(sample.value))
            row(model)["embeddings_per_s"] = round(sample.value / seconds, 6)
    for sample in found["fallbacks"]:  # answered by the fallback model instead of this one
        model = sample.labels.get("requested_model")
        if model and sample.value:
            row(model)["fallbacks"] = int(round(sample.value))
    for name in ("p50_s", "p95_s", "ttft_p50_s", "output_tokens_per_s"):
        for sample in found[name]:
            model = sample.labels.get("requested_model")
            if model and model in models and sample.value is not None:
                models[model][name] = round(sample.value, 6)
    doc["models"] = models
    return doc


def merged_rows(table: dict, figures: dict, routed: dict[str, str]) -> list[dict]:
    """models_table's rows (configured/present/loaded/note) with each model's traffic and kind added."""
    rows = []
    known = {r["name"]: r for r in table.get("models", [])}
    backends_up = any(b.get("status") == "healthy" for b in table.get("backends", []))
    # The config's routes too: a routed model the proxy does not list yet and no backend has is worth a row.
    names = list(known) + [m for m in routed if m not in known]
    names += [m for m in figures.get("models", {}) if m not in names]
    for name in names:
        base = known.get(name) or {"name": name, "configured": name in routed, "present_on": [], "loaded_on": [],
                                   "note": modelview.route_note(name in routed, False, backends_up)}
        traffic_row = figures.get("models", {}).get(name)
        kind = routed.get(name) or ("embedding" if traffic_row and traffic_row["embedding_requests"] else "chat")
        rows.append({**base, "kind": kind, "traffic": traffic_row})
    return rows


def check_model(model: str | None, known: set[str]) -> str | None:
    """None for "all" (or nothing); the model when the stack knows it; else BadModel naming the choices."""
    if model in (None, "", ALL):
        return None
    if model not in known:
        choices = ", ".join(sorted(known)) or "none known yet"
        raise BadModel(f"model {model!r} is not one the stack knows (expected {ALL} or one of: {choices})")
    return model


def _matcher(name: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}="{escaped}"'


def _series(prefix: str) -> re.Pattern:
    """A series of the family `prefix*` in PromQL text, with its optional suffix and {matchers}."""
    return re.compile(rf"\b({prefix}[a-z_]+?)(_bucket|_total)?(\{{[^}}]*\}})?(?=[\[\)\s,]|$)")


_LITELLM, _BACKEND = _series("litellm_"), _series("llm_backend_")


def _with(pattern: re.Pattern, expr: str, matcher: str) -> str:
    def add(m: re.Match) -> str:
        inner = (m.group(3) or "{}")[1:-1]
        return f"{m.group(1)}{m.group(2) or ''}{{{','.join(x for x in (inner, matcher) if x)}}}"

    return pattern.sub(add, expr)


def filter_expr(expr: str, model: str) -> str:
    """`expr` with every LiteLLM series limited to requested_model=model, and the backend's to model=model."""
    return _with(_BACKEND, _with(_LITELLM, expr, _matcher("requested_model", model)), _matcher("model", model))


def model_specs(specs: list[dict], model: str | None, rate: str, embedding_models: list[str]) -> list[dict]:
    """The chart specs with embeddings as their own kind (requests and latency), then the model filter."""
    out = []
    embed = f'route=~"{EMBEDDING_ROUTES}"'
    # A regex inside a PromQL string: metacharacters need a backslash that survives the string's unquoting.
    chosen = "|".join(re.sub(r"([.+*?()\[\]{}|^$\\])", r"\\\\\1", m) for m in embedding_models)
    for spec in specs:
        if isinstance(spec["series"], str):
            # Drawn by charts() from one exact count by status code (already filtered by model there); the
            # embeddings series of the requests chart rides along as an extra.
            extra = []
            if spec["id"] == "requests":
                embed_expr = f"sum(rate({TOTAL}{{{REAL},{embed}}}[{rate}]))"
                extra.append(("embeddings (any outcome)", filter_expr(embed_expr, model) if model else embed_expr))
            out.append({**spec, "extra": extra})
            continue
        series = list(spec["series"])
        if spec["id"] == "requests":
            series.append(("embeddings (any outcome)", f"sum(rate({TOTAL}{{{REAL},{embed}}}[{rate}]))"))
        if spec["id"] == "latency" and chosen:
            bucket = f'litellm_request_total_latency_metric_bucket{{requested_model=~"{chosen}"}}'
            series += [(f"embeddings p{int(q * 100)}",
                        f"histogram_quantile({q}, sum by (le) (rate({bucket}[{rate}])))") for q in (0.5, 0.95)]
        if model and spec["id"] in SHARED:
            # In flight and queued are one queue for all models (no model label): shown whole, and said so.
            out.append({**spec, "series": series, "title": f"{spec['title']} (all models)"})
            continue
        if model:
            series = [(name, filter_expr(expr, model)) for name, expr in series]
        out.append({**spec, "series": series})
    return out
