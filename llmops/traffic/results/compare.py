"""--compare RUN_A RUN_B: B's figures against A's with ratios, printed and drawn on one page."""
from __future__ import annotations

import html
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import folder, htmlreport, reportdata
from .htmlreport import chart, ms

# (label, path in the summary, unit, which way is better)
METRICS = (
    ("requests", ("requests", "total"), "", None),
    ("ok", ("requests", "ok"), "", None),
    ("error ratio", ("error_ratio",), "%", "lower"),
    ("throughput", ("throughput", "requests_per_s"), "req/s", "higher"),
    ("output tokens/s", ("throughput", "output_tokens_per_s"), "tok/s", "higher"),
    *((f"latency {p}", ("latency_s", p), "ms", "lower") for p in ("p50", "p90", "p95", "p99")),
    *((f"TTFT {p}", ("ttft_s", p), "ms", "lower") for p in ("p50", "p90", "p99")),
    *((f"inter-token {p}", ("itl_s", p), "ms", "lower") for p in ("p50", "p90", "p99")),
    ("time per output token p50", ("tpot_s", "p50"), "ms", "lower"),
)
SAME = 0.05  # a change under 5% is shown as neither better nor worse: the machine's noise is larger


def _dig(doc: dict, path: tuple[str, ...]) -> float | None:
    node: object = doc
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return reportdata._num(node)


def ratio(a: float | None, b: float | None) -> float | None:
    """B / A, or None where A is zero or either is missing."""
    if a is None or b is None or a == 0:
        return None
    return b / a


def _row(label: str, unit: str, better: str | None, a: float | None, b: float | None) -> dict:
    r = ratio(a, b)
    verdict = None
    if r is not None and better and abs(r - 1) >= SAME:
        verdict = "better" if (r > 1) == (better == "higher") else "worse"
    return {"metric": label, "unit": unit, "a": a, "b": b, "ratio": r,
            "change": None if r is None else r - 1, "verdict": verdict}


def comparison(a: dict, b: dict) -> list[dict]:
    """One row per figure (and per concurrency level both sweeps ran): A, B, B/A and the change."""
    rows = [_row(label, unit, better, _dig(a, path), _dig(b, path)) for label, path, unit, better in METRICS]
    sa, sb = reportdata.sweep(a), reportdata.sweep(b)
    if sa and sb:
        by_c = {lv["concurrency"]: lv for lv in sb["levels"]}
        for lv in sa["levels"]:
            other = by_c.get(lv["concurrency"])
            if other is None:
                continue
            c = f"{lv['concurrency']:g}"
            rows.append(_row(f"c={c} throughput", "req/s", "higher", lv["requests_per_s"], other["requests_per_s"]))
            rows.append(_row(f"c={c} latency p50", "ms", "lower", lv["latency_p50_s"], other["latency_p50_s"]))
        rows.append(_row("knee concurrency", "", "higher", sa["knee_concurrency"], sb["knee_concurrency"]))
    return rows


def shown(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value * 1000:,.1f} ms"
    if unit == "%":
        return f"{value * 100:.2f} %"
    if unit:
        return f"{value:,.2f} {unit}"
    return f"{value:g}"


def table(rows: list[dict], a_name: str, b_name: str) -> Table:
    """The rows as a rich table: metric, A, B, B/A, change."""
    t = Table(title=f"B against A\n  A = {a_name}\n  B = {b_name}", title_justify="left")
    for name in ("metric", "A", "B", "B/A", "change"):
        t.add_column(name, justify="left" if name == "metric" else "right")
    for r in rows:
        style = {"better": "green", "worse": "red"}.get(r["verdict"] or "", "")
        t.add_row(r["metric"], shown(r["a"], r["unit"]), shown(r["b"], r["unit"]), *_ratio_text(r), style=style)
    return t


def _records(stored: folder.StoredRun) -> list[dict]:
    return folder.read_records(stored.path / folder.REQUESTS_FILE)[0] if folder.REQUESTS_FILE in stored.files else []


def compare_charts(a: folder.StoredRun, b: folder.StoredRun) -> list[dict]:
    """Both runs on the same axes: percentiles, latency histograms on shared bins, time series, sweeps."""
    out = []
    for key, title, qs in (("latency_s", "End-to-end latency", ("p50", "p90", "p95", "p99")),
                           ("ttft_s", "Time to first token", reportdata.SHOWN_PERCENTILES),
                           ("itl_s", "Inter-token latency", reportdata.SHOWN_PERCENTILES)):
        series = [{"name": s.name, "data": [ms(_dig(s.summary, (key, q))) for q in qs]} for s in (a, b)]
        if any(v is not None for s in series for v in s["data"]):
            out.append(chart(f"cmp-{key}", f"{title}: A and B", "bar", series, {"title": "percentile"},
                             {"title": "ms"}, labels=list(qs)))
    ra, rb = _records(a), _records(b)
    la, lb = reportdata.ok_latencies(ra), reportdata.ok_latencies(rb)
    if la or lb:
        top = max(la + lb)
        ha, hb = reportdata.histogram(la, top=top), reportdata.histogram(lb, top=top)
        edges = (ha if la else hb)["edges"]
        labels = [round((x + y) / 2 * 1000, 1) for x, y in zip(edges, edges[1:], strict=False)]
        out.append(chart("cmp-histogram", "Latency of successful requests, same bins", "bar",
                         [{"name": a.name, "data": ha["counts"] or [0] * len(labels)},
                          {"name": b.name, "data": hb["counts"] or [0] * len(labels)}],
                         {"title": "latency (ms, bin middle)"}, {"title": "requests"}, labels=labels))
    if ra or rb:
        width = reportdata.bin_width(max(reportdata.span(ra), reportdata.span(rb), 1e-9))
        ta, tb = reportdata.timeline(ra, width), reportdata.timeline(rb, width)
        n = max(len(ta["t"]), len(tb["t"]))
        pad = lambda xs: list(xs) + [None] * (n - len(xs))  # noqa: E731
        labels = [round(i * width, 6) for i in range(n)]
        x = {"title": f"seconds from each run's first request (bins of {width:g} s)"}
        ok = lambda t: t["outcomes"].get("ok", [0] * len(t["t"]))  # noqa: E731
        out.append(chart("cmp-timeline", "Successful requests over time", "line",
                         [{"name": a.name, "data": pad(ok(ta))}, {"name": b.name, "data": pad(ok(tb))}],
                         x, {"title": "requests started"}, labels=labels))
        out.append(chart("cmp-tokens", "Output tokens/s over time", "line",
                         [{"name": a.name, "data": pad(ta["tokens_per_s"])},
                          {"name": b.name, "data": pad(tb["tokens_per_s"])}], x, {"title": "tokens/s"}, labels=labels))
    out.extend(htmlreport.sweep_charts([(a.name, reportdata.sweep(a.summary)), (b.name, reportdata.sweep(b.summary))]))
    return out


def _ratio_text(r: dict) -> tuple[str, str]:
    return ("-" if r["ratio"] is None else f"{r['ratio']:.3f}", "-" if r["change"] is None else f"{r['change']:+.1%}")


def rows_html(rows: list[dict]) -> str:
    cells = []
    for r in rows:
        ratio_s, change_s = _ratio_text(r)
        values = (shown(r["a"], r["unit"]), shown(r["b"], r["unit"]), ratio_s, change_s)
        tds = "".join(f"<td class=n>{html.escape(v)}</td>" for v in values)
        cells.append(f'<tr data-metric="{html.escape(r["metric"])}" class="{r["verdict"] or ""}">'
                     f'<td>{html.escape(r["metric"])}</td>{tds}</tr>')
    return ('<div class="table-wrap"><table id="comparison"><thead><tr><th>metric</th><th class=n>A</th>'
            f'<th class=n>B</th><th class=n>B/A</th><th class=n>change</th></tr></thead><tbody>{"".join(cells)}'
            '</tbody></table></div>')


def render(a: folder.StoredRun, b: folder.StoredRun, rows: list[dict]) -> str:
    """The comparison page: the ratio table and both runs drawn on the same axes."""
    charts = compare_charts(a, b)
    data = {"kind": "compare", "a": {"name": a.name, "summary": a.summary}, "b": {"name": b.name, "summary": b.summary},
            "rows": rows, "charts": charts}
    body = (f'<p class="panel">A = <strong>{html.escape(a.name)}</strong>, B = <strong>{html.escape(b.name)}</strong>. '
            'B/A above 1 means B is higher; green is better, red worse (changes under 5% are not coloured: '
            f'a shared machine is noisier than that).</p><h2>Figures</h2>{rows_html(rows)}'
            f'<h2>Both runs on the same axes</h2>{htmlreport.charts_html(charts)}')
    return htmlreport.page(f"Load tests compared: {b.name} against {a.name}",
                           f"A: {a.summary.get('model', '?')} {a.summary.get('started_at', '?')}; "
                           f"B: {b.summary.get('model', '?')} {b.summary.get('started_at', '?')}", body, data)


def main(ref_a: str, ref_b: str, results_dir: Path, console: Console | None = None) -> int:
    """Print the comparison and write its page under <results_dir>/comparisons/; ConfigError for a bad run."""
    a, b = folder.resolve_ref(ref_a, results_dir), folder.resolve_ref(ref_b, results_dir)
    rows = comparison(a.summary, b.summary)
    console = console or Console()
    console.print(table(rows, folder.shown_path(a.path), folder.shown_path(b.path)))
    out_dir = Path(results_dir) / folder.COMPARISONS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = folder.write_text(out_dir / f"{folder.slug(a.name)}--vs--{folder.slug(b.name)}.html", render(a, b, rows))
    print(f"comparison: {folder.shown_path(path)}", flush=True)
    return 0
