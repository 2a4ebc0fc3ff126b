"""What a run's summary reads like on a terminal: the counts, latency, sweep, per-model and per-priority tables (rich)."""
from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ... import outcomes
from .summary import PERCENTILES


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f}"


def summary_tables(summary: dict) -> Group:
    """Counts, throughput, and the latency table (p50/p90/p95/p99 in ms)."""
    req = summary["requests"]
    counts = Table(title=f"Traffic summary: {summary.get('model', '?')} at {summary.get('url', '?')}",
                   show_header=False, title_justify="left")
    counts.add_column(style="bold")
    counts.add_column(justify="right")
    counts.add_row("requests", f"{req['total']}")
    counts.add_row("ok", f"{req['ok']}")
    counts.add_row("failed", f"{req['failed']}")
    shown = summary.get("outcomes") or {}
    for name in outcomes.GENERATOR_CLASSES[1:]:
        if shown.get(name) or name in (outcomes.TIMEOUT, outcomes.RATE_LIMITED):
            counts.add_row(f"  {outcomes.LEGENDS[name]}", f"{shown.get(name, 0)}")
    details = summary.get("details") or {}
    if details:
        counts.add_row("  details", ", ".join(f"{k} {v}" for k, v in details.items()))
    if req["cancelled"]:
        counts.add_row("cancelled by the interrupt (not counted)", f"{req['cancelled']}")
    if summary.get("warmup", {}).get("requests"):
        counts.add_row("warmup (not counted)", f"{summary['warmup']['requests']}")
    counts.add_row("error ratio", f"{summary['error_ratio']:.2%}")
    thr = summary["throughput"]
    counts.add_row("duration", f"{summary['duration_s']:.2f} s")
    counts.add_row("throughput", "-" if thr["requests_per_s"] is None else f"{thr['requests_per_s']:.2f} req/s")
    counts.add_row("output tokens", "-" if thr["output_tokens_per_s"] is None
                   else f"{summary['tokens']['completion']} ({thr['output_tokens_per_s']:.1f} tok/s, "
                        f"from {summary['tokens']['source']})")
    good = summary.get("goodput")
    if good:
        slos = ", ".join(f"{name} <= {_ms(v)} ms" for name, v in
                         (("TTFT", good["slo_ttft_s"]), ("latency", good["slo_latency_s"])) if v is not None)
        ratio = "-" if good["ratio"] is None else f"{good['ratio']:.1%}"
        counts.add_row("goodput", f"{ratio} met {slos}")
    lat = Table(title="Latency (ms)", title_justify="left")
    lat.add_column("")
    for p in PERCENTILES:
        lat.add_column(f"p{p}", justify="right")
    lat.add_column("mean", justify="right")
    lat.add_column("max", justify="right")
    for name, key in (("end to end", "latency_s"), ("time to first token", "ttft_s"),
                      ("inter-token", "itl_s"), ("time per output token", "tpot_s")):
        d = summary[key]
        lat.add_row(name, *(_ms(d[f"p{p}"]) for p in PERCENTILES), _ms(d["mean"]), _ms(d["max"]))
    return Group(counts, lat)


def sweep_table(levels: list[dict], knee: dict) -> Group:
    """One row per concurrency level, and the line that says where throughput stopped growing."""
    table = Table(title="Concurrency sweep", title_justify="left")
    for name in ("concurrency", "req/s", "out tok/s", "p50 ms", "p99 ms", "TTFT p50 ms", "errors"):
        table.add_column(name, justify="right")
    for lvl in levels:
        thr = lvl["throughput"]
        table.add_row(str(lvl["concurrency"]),
                      "-" if thr["requests_per_s"] is None else f"{thr['requests_per_s']:.2f}",
                      "-" if thr["output_tokens_per_s"] is None else f"{thr['output_tokens_per_s']:.1f}",
                      _ms(lvl["latency_s"]["p50"]), _ms(lvl["latency_s"]["p99"]), _ms(lvl["ttft_s"]["p50"]),
                      f"{lvl['error_ratio']:.1%}")
    return Group(table, Text(knee["message"], style="bold"))


def capacity_table(cap: dict) -> Group:
    """One row per level judged (each bound's figure, a mark where it broke), then the answer and its warnings."""
    table = Table(title=f"Capacity within {', '.join(cap['bounds'])}", title_justify="left")
    checks = [c["bound"] for c in (cap["levels"][0]["checks"] if cap["levels"] else [])]
    for name in ("concurrency", "requests", "req/s", *(c.split("<")[0].split(">")[0] for c in checks), "within"):
        table.add_column(name, justify="right")
    for lvl in cap["levels"]:
        cells = []
        for c in lvl["checks"]:
            value = "-" if c["value"] is None else (f"{c['value']:.1%}" if c["metric"] in ("errors", "goodput")
                                                    else f"{c['value'] * 1000:,.0f} ms")
            cells.append(value if c["met"] else f"{value} ✗")
        rps = lvl["requests_per_s"]
        table.add_row(str(lvl["concurrency"]), str(lvl["requests"]), "-" if rps is None else f"{rps:.2f}", *cells,
                      "yes" if lvl["within_slo"] else "no")
    lines = [Text(cap["message"], style="bold"), *(Text(f"warning: {w}", style="yellow") for w in cap["warnings"])]
    return Group(table, *lines)


def models_table(models: dict[str, dict]) -> Table:
    """requests, ok, failures by class, p50/p95 latency, TTFT and throughput, one row per model."""
    table = Table(title="Per model", title_justify="left")
    for name in ("model", "share", "requests", "ok", "failures", "p50 ms", "p95 ms", "TTFT p50 ms",
                 "out tok/s", "emb/s"):
        table.add_column(name, justify="left" if name in ("model", "failures") else "right")
    for model, m in models.items():
        thr = m["throughput"]
        failures = ", ".join(outcomes.describe(k, v) for k, v in m["failures"].items()) or "-"
        table.add_row(model, "-" if m["share"] is None else f"{m['share']:.0%}", str(m["requests"]["total"]),
                      str(m["requests"]["ok"]), failures, _ms(m["latency_s"]["p50"]), _ms(m["latency_s"]["p95"]),
                      _ms(m["ttft_s"]["p50"]),
                      "-" if thr["output_tokens_per_s"] is None else f"{thr['output_tokens_per_s']:.1f}",
                      "-" if thr["embeddings_per_s"] is None else f"{thr['embeddings_per_s']:.1f}")
    return table


def priorities_table(priorities: dict[str, dict]) -> Table:
    """One row per priority class, most urgent first: requests by outcome, TTFT and latency p50/p95."""
    table = Table(title="Per priority (lower is served first)", title_justify="left")
    for name in ("priority", "share", "requests", "ok", "failures", "TTFT p50 ms", "TTFT p95 ms", "p50 ms", "p95 ms"):
        table.add_column(name, justify="left" if name == "failures" else "right")
    for key, m in priorities.items():
        failures = ", ".join(outcomes.describe(k, v) for k, v in m["failures"].items()) or "-"
        table.add_row(key, "-" if m["share"] is None else f"{m['share']:.0%}", str(m["requests"]["total"]),
                      str(m["requests"]["ok"]), failures, _ms(m["ttft_s"]["p50"]), _ms(m["ttft_s"]["p95"]),
                      _ms(m["latency_s"]["p50"]), _ms(m["latency_s"]["p95"]))
    return table


def run_tables(summary: dict) -> Group:
    """Everything a finished run prints: the summary tables, then per model and per priority (for a mix) and the
    sweep. A summary kept before a part existed (no "priorities") prints without it."""
    parts = [summary_tables(summary)]
    if len(summary.get("models") or {}) > 1:
        parts.append(models_table(summary["models"]))
    if len(summary.get("priorities") or {}) > 1:
        parts.append(priorities_table(summary["priorities"]))
    if "capacity" in summary:
        parts.append(capacity_table(summary["capacity"]))
    elif "sweep" in summary:
        parts.append(sweep_table(summary["sweep"], summary["knee"]))
    return Group(*parts)
