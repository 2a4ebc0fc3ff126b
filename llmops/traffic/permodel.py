"""Per-model figures of a run with a model mix: the summary's "models" part and its table."""
from __future__ import annotations

from rich.table import Table

from .mix import ModelMix
from .stats import Recorder


def per_model(mix: ModelMix, recorders: dict[str, Recorder]) -> dict[str, dict]:
    """One entry per model of the mix (a model that got no request has zero counts), in the mix's order."""
    out: dict[str, dict] = {}
    for model in (*mix.models, *(m for m in recorders if m not in mix.models)):
        rec = recorders.get(model) or Recorder()
        s = rec.summary()
        out[model] = {
            "share": mix.share(model) if model in mix.models else None,
            "requests": s["requests"], "failures": s["failures"], "error_ratio": s["error_ratio"],
            "throughput": s["throughput"], "tokens": s["tokens"],
            "latency_s": {k: s["latency_s"][k] for k in ("count", "p50", "p95", "p99")},
            "ttft_s": {k: s["ttft_s"][k] for k in ("count", "p50", "p95", "p99")},
        }
    return out


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f}"


def models_table(models: dict[str, dict]) -> Table:
    """requests, ok, failures by class, p50/p95 latency, TTFT and throughput, one row per model."""
    table = Table(title="Per model", title_justify="left")
    for name in ("model", "share", "requests", "ok", "failures", "p50 ms", "p95 ms", "TTFT p50 ms",
                 "out tok/s", "emb/s"):
        table.add_column(name, justify="left" if name in ("model", "failures") else "right")
    for model, m in models.items():
        thr = m["throughput"]
        failures = ", ".join(f"{k} {v}" for k, v in m["failures"].items()) or "-"
        table.add_row(model, "-" if m["share"] is None else f"{m['share']:.0%}", str(m["requests"]["total"]),
                      str(m["requests"]["ok"]), failures, _ms(m["latency_s"]["p50"]), _ms(m["latency_s"]["p95"]),
                      _ms(m["ttft_s"]["p50"]),
                      "-" if thr["output_tokens_per_s"] is None else f"{thr['output_tokens_per_s']:.1f}",
                      "-" if thr["embeddings_per_s"] is None else f"{thr['embeddings_per_s']:.1f}")
    return table
