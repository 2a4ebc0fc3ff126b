"""report.html: one run's results as a self-contained page (Chart.js and the data inlined, no network)."""
from __future__ import annotations

import html
import json
import shlex
from pathlib import Path
from string import Template

from ... import outcomes
from . import reportdata

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
CHARTJS = HERE.parents[1] / "dashboard" / "static" / "vendor" / "chartjs"  # the dashboard's vendored copy
GENERATOR = "llmops-traffic"  # named at the foot of a page whose summary does not say which version drew it
OUTCOME_COLORS = {outcomes.OK: "#059669", outcomes.CLIENT_ERROR: "#db2777", outcomes.RATE_LIMITED: "#d97706",
                  outcomes.SERVER_ERROR: "#dc2626", outcomes.TIMEOUT: "#7c3aed", outcomes.INVALID_OUTPUT: "#a16207"}


def chartjs_dir() -> Path:
    """The folder of the vendored Chart.js (its min.js and VERSION)."""
    if (CHARTJS / "chart.umd.min.js").is_file():
        return CHARTJS
    raise FileNotFoundError(f"vendored Chart.js not found in {CHARTJS}")


def chartjs_version() -> str:
    first = (chartjs_dir() / "VERSION").read_text().split("\n", 1)[0]
    return first.split()[1] if first.startswith("Chart.js ") else first.strip()


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f} ms"


def fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def embed_json(doc: dict) -> str:
    """JSON safe inside <script type="application/json"> (no `</script>` or `<!--` can end it early)."""
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def chart(id: str, title: str, kind: str, series: list[dict], x: dict, y: dict, labels=None, stacked=False,
          mark_x=None, mark_label=None, note: str = "", mark_y=None, mark_y_label=None) -> dict:
    """One chart spec as report.js draws it (mark_x: a vertical line, mark_y: a horizontal one such as an SLO)."""
    return {"id": id, "title": title, "kind": kind, "series": series, "x": x, "y": y, "labels": labels,
            "stacked": stacked, "mark_x": mark_x, "mark_label": mark_label, "note": note, "mark_y": mark_y,
            "mark_y_label": mark_y_label}


def run_charts(d: dict) -> list[dict]:
    """The charts of one run's page, from report_data()."""
    out = []
    tl = d["timeline"]
    if tl["t"]:
        x = {"title": f"seconds from the first request (bins of {tl['bin_s']:g} s)"}
        out.append(chart("timeline", "Requests over time, by outcome", "bar",
                         [{"name": outcomes.LEGENDS.get(k, k), "data": v, "color": OUTCOME_COLORS.get(k)}
                          for k, v in tl["outcomes"].items()],
                         x, {"title": "requests started"}, labels=tl["t"], stacked=True))
        out.append(chart("tokens", "Output tokens/s over time", "line",
                         [{"name": "output tokens/s", "data": tl["tokens_per_s"]}], x, {"title": "tokens/s"},
                         labels=tl["t"]))
    h = d["histogram"]
    if h["counts"]:
        labels = [round((a + b) / 2 * 1000, 1) for a, b in zip(h["edges"], h["edges"][1:], strict=False)]
        out.append(chart("histogram", "End-to-end latency of successful requests", "bar",
                         [{"name": "requests", "data": h["counts"]}], {"title": "latency (ms, bin middle)"},
                         {"title": "requests"}, labels=labels))
    for key, title in (("ttft_s", "Time to first token"), ("itl_s", "Inter-token latency"),
                       ("latency_s", "End-to-end latency")):
        p = d["percentiles"][key]
        if any(p[q] is not None for q in reportdata.SHOWN_PERCENTILES):
            out.append(chart(f"pct-{key}", f"{title}: p50 / p90 / p99", "bar",
                             [{"name": title, "data": [ms(p[q]) for q in reportdata.SHOWN_PERCENTILES]}],
                             {"title": "percentile"}, {"title": "ms"}, labels=list(reportdata.SHOWN_PERCENTILES)))
    out.extend(capacity_charts(d.get("capacity")))
    out.extend(sweep_charts([("", d["sweep"])]))
    if d["per_model"]:
        models = [m["model"] for m in d["per_model"]]
        out.append(chart("per-model", "Latency by model", "bar",
                         [{"name": "p50", "data": [ms(m["latency_p50_s"]) for m in d["per_model"]]},
                          {"name": "p95", "data": [ms(m["latency_p95_s"]) for m in d["per_model"]]},
                          {"name": "TTFT p50", "data": [ms(m["ttft_p50_s"]) for m in d["per_model"]]}],
                         {"title": "model"}, {"title": "ms"}, labels=models))
    if d.get("per_priority"):
        rows = d["per_priority"]
        out.append(chart("per-priority", "Time to first token and latency by priority (lower is served first)", "bar",
                         [{"name": name, "data": [ms(r[key]) for r in rows]} for name, key in
                          (("TTFT p50", "ttft_p50_s"), ("TTFT p95", "ttft_p95_s"), ("p50", "latency_p50_s"),
                           ("p95", "latency_p95_s"))],
                         {"title": "priority"}, {"title": "ms"}, labels=[r["priority"] for r in rows]))
    return out


def capacity_charts(cap: dict | None) -> list[dict]:
    """Each SLO bound's figure against concurrency, its limit as a horizontal line, the answer as a vertical one."""
    if not cap or not cap["levels"]:
        return []
    out = []
    answer = cap["max_concurrency"]
    for b in cap["bounds"]:
        scale, unit = (100, "%") if b["ratio"] else (1000, "ms")
        points = [[lv["concurrency"], None if lv["values"].get(b["metric"]) is None
                   else round(lv["values"][b["metric"]] * scale, 4)] for lv in cap["levels"]]
        limit = None if b["limit"] is None else round(b["limit"] * scale, 4)
        out.append(chart(f"capacity-{b['metric']}", f"{b['metric']} against concurrency (SLO {b['bound']})", "line",
                         [{"name": b["metric"], "data": points}], {"title": "concurrency", "type": "linear"},
                         {"title": unit}, mark_x=answer or None, mark_label=f"capacity {answer:g}" if answer else None,
                         mark_y=limit, mark_y_label=f"SLO {b['bound']}", note=cap["message"] or ""))
    return out


def sweep_charts(sweeps: list[tuple[str, dict | None]]) -> list[dict]:
    """Throughput and p50/p95 latency against concurrency, one series per (label, sweep); knee of the first."""
    present = [(label, s) for label, s in sweeps if s and s["levels"]]
    if not present:
        return []
    knee = present[0][1]["knee_concurrency"]
    pre = lambda label: f"{label}: " if label else ""  # noqa: E731
    thr, lat = [], []
    for i, (label, s) in enumerate(present):
        dashed = i > 0  # the second run of a comparison
        thr.append({"name": f"{pre(label)}requests/s", "data": _points(s, "requests_per_s"), "dashed": dashed})
        lat.append({"name": f"{pre(label)}p50", "data": _points(s, "latency_p50_s", 1000), "dashed": dashed})
        lat.append({"name": f"{pre(label)}p95", "data": _points(s, "latency_p95_s", 1000), "dashed": dashed})
    x = {"title": "concurrency", "type": "linear"}
    mark = "knee" if len(present) == 1 else f"knee ({present[0][0]})"
    note = present[0][1]["knee_message"] or ""
    return [chart("sweep-throughput", "Throughput against concurrency", "line", thr, x, {"title": "requests/s"},
                  mark_x=knee, mark_label=mark, note=note),
            chart("sweep-latency", "Latency p50 / p95 against concurrency", "line", lat, x, {"title": "ms"},
                  mark_x=knee, mark_label=mark, note=note)]


def _points(sweep: dict, key: str, scale: float = 1.0) -> list[list]:
    return [[lv["concurrency"], None if lv[key] is None else round(lv[key] * scale, 4)] for lv in sweep["levels"]]


def figures(summary: dict) -> list[tuple[str, str]]:
    """The headline figures as (label, formatted value); the page shows exactly these."""
    req = summary.get("requests", {})
    thr = summary.get("throughput", {})
    failures = summary.get("failures") if isinstance(summary.get("failures"), dict) else {}
    cap = summary.get("capacity") if isinstance(summary.get("capacity"), dict) else None
    out = [("capacity", "-" if cap.get("max_concurrency") is None else f"{cap['max_concurrency']} streams")] \
        if cap else []
    out += [("requests", f"{req.get('total', 0)}"), ("ok", f"{req.get('ok', 0)}"),
           ("failed", f"{req.get('failed', 0)}"),
           *((outcomes.LEGENDS[k], f"{n}") for k, n in failures.items() if k in outcomes.LEGENDS),
           *((("cancelled (not counted)", f"{req['cancelled']}"),) if req.get("cancelled") else ()),
           ("error ratio", fmt((summary.get("error_ratio") or 0) * 100, " %", 2)),
           ("duration", fmt(summary.get("duration_s"), " s")),
           ("throughput", fmt(thr.get("requests_per_s"), " req/s")),
           ("output tokens/s", fmt(thr.get("output_tokens_per_s"), " tok/s", 1))]
    for key, label in (("latency_s", "latency"), ("ttft_s", "TTFT"), ("itl_s", "inter-token")):
        d = summary.get(key) if isinstance(summary.get(key), dict) else {}
        for p in ("p50", "p90", "p95", "p99") if key == "latency_s" else reportdata.SHOWN_PERCENTILES:
            out.append((f"{label} {p}", fmt_ms(d.get(p))))
    return out


def figures_html(pairs: list[tuple[str, str]]) -> str:
    cells = "".join(f'<div class="figure" data-figure="{html.escape(k)}"><div class="k">{html.escape(k)}</div>'
                    f'<div class="v">{html.escape(v)}</div></div>' for k, v in pairs)
    return f'<div class="figures">{cells}</div>'


def charts_html(specs: list[dict]) -> str:
    if not specs:
        return '<p class="panel muted">No request finished, so there is nothing to draw.</p>'
    parts = []
    for s in specs:
        note = f'<div class="note">{html.escape(s["note"])}</div>' if s.get("note") else ""
        parts.append(f'<figure class="chart" data-chart="{html.escape(s["id"])}"><figcaption>{html.escape(s["title"])}'
                     f'</figcaption><div class="box"><canvas role="img" aria-label="{html.escape(s["title"])}">'
                     f'</canvas></div>{note}</figure>')
    return f'<div class="charts">{"".join(parts)}</div>'


def _facts(run: dict, summary: dict) -> str:
    stack = run.get("stack") if isinstance(run.get("stack"), dict) else {}
    proxy = stack.get("proxy") if isinstance(stack.get("proxy"), dict) else {}
    backends = stack.get("backends") if isinstance(stack.get("backends"), list) else []
    rows = [("started", summary.get("started_at") or run.get("started_at")), ("model", summary.get("model")),
            ("proxy", f"{proxy.get('url') or summary.get('url') or '?'} (LiteLLM {proxy.get('version', 'unknown')})"),
            ("backend", "; ".join(f"{b['url']} (version {b.get('version', 'unknown')})"
                                  for b in backends if isinstance(b, dict) and b.get("url")) or "unknown"),
            ("seed", summary.get("seed")), ("verdict", summary.get("verdict"))]
    dl = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in rows if v not in (None, ""))
    cmd = run.get("command")
    cmd_html = (f'<p class="muted">command line</p><code class="cmd">{html.escape(shlex.join(map(str, cmd)))}</code>'
                if isinstance(cmd, list) else "")
    return f'<div class="panel"><dl class="facts">{dl}</dl>{cmd_html}</div>'


def per_model_html(rows: list[dict]) -> str:
    if not rows:
        return ""
    body = "".join(f"<tr><td>{html.escape(r['model'])}</td><td class=n>{r['requests']}</td><td class=n>{r['ok']}</td>"
                   f"<td class=n>{fmt_ms(r['latency_p50_s'])}</td><td class=n>{fmt_ms(r['latency_p95_s'])}</td>"
                   f"<td class=n>{fmt_ms(r['ttft_p50_s'])}</td></tr>" for r in rows)
    return ('<h2>By model</h2><div class="table-wrap"><table id="per-model"><thead><tr><th>model</th>'
            '<th class=n>requests</th><th class=n>ok</th><th class=n>p50</th><th class=n>p95</th>'
            f'<th class=n>TTFT p50</th></tr></thead><tbody>{body}</tbody></table></div>')


def per_priority_html(rows: list[dict]) -> str:
    """The "By priority" table: requests, each outcome class, TTFT and latency p50/p95 per priority class."""
    if not rows:
        return ""
    classes = [c for c in outcomes.GENERATOR_CLASSES if any(r["outcomes"].get(c) for r in rows)
               or c in (outcomes.OK, outcomes.RATE_LIMITED)]
    share = lambda r: "-" if r["share"] is None else f"{r['share']:.0%}"  # noqa: E731
    body = "".join(
        f'<tr data-priority="{html.escape(r["priority"])}"><td>{html.escape(r["priority"])}</td>'
        f"<td class=n>{share(r)}</td><td class=n>{fmt(r['requests'], digits=0)}</td>"
        + "".join(f"<td class=n>{r['outcomes'].get(c, 0)}</td>" for c in classes)
        + "".join(f"<td class=n>{fmt_ms(r[k])}</td>" for k in ("ttft_p50_s", "ttft_p95_s", "latency_p50_s",
                                                               "latency_p95_s"))
        + "</tr>" for r in rows)
    heads = "".join(f"<th class=n>{html.escape(outcomes.LEGENDS.get(c, c))}</th>" for c in classes)
    return ('<h2>By priority</h2><div class="table-wrap"><table id="per-priority"><thead><tr><th>priority</th>'
            f'<th class=n>share</th><th class=n>requests</th>{heads}<th class=n>TTFT p50</th><th class=n>TTFT p95</th>'
            f'<th class=n>p50</th><th class=n>p95</th></tr></thead><tbody>{body}</tbody></table></div>')


def page(title: str, subtitle: str, body: str, data: dict, generator: str | None = None) -> str:
    """The whole self-contained page around a body and its embedded data; `generator` is the tool that ran it."""
    folder = chartjs_dir()
    return Template((TEMPLATES / "report.html").read_text()).substitute(
        title=html.escape(title), subtitle=html.escape(subtitle), body=body, generator=html.escape(generator or GENERATOR),
        style=(TEMPLATES / "report.css").read_text(), data=embed_json(data),
        chartjs=(folder / "chart.umd.min.js").read_text(), chartjs_version=html.escape(chartjs_version()),
        script=(TEMPLATES / "report.js").read_text())


def render_run(summary: dict, records: list[dict], run: dict | None = None, bad_lines: int = 0,
               name: str = "") -> str:
    """report.html of one run."""
    d = reportdata.report_data(summary, records, run, bad_lines)
    d["kind"] = "run"
    d["figures"] = dict(figures(summary))
    d["charts"] = run_charts(d)
    notes = []
    if summary.get("interrupted"):
        notes.append("The run was interrupted (Ctrl-C): the figures cover what finished.")
    cancelled = (summary.get("requests") or {}).get("cancelled")
    if cancelled:
        notes.append(f"{cancelled} request(s) in flight when the run was interrupted were cancelled by the generator "
                     "and are not counted in any figure or chart.")
    if bad_lines:
        notes.append(f"{bad_lines} line(s) of requests.jsonl could not be read and are left out of the charts.")
    if d["capacity"]:
        notes.append(d["capacity"]["message"] or "no capacity answer")
        notes.extend(f"warning: {w}" for w in d["capacity"]["warnings"])
    elif d["sweep"] and d["sweep"]["knee_message"]:
        notes.append(d["sweep"]["knee_message"])
    notes_html = "".join(f'<p class="panel warn">{html.escape(n)}</p>' for n in notes)
    body = (f"{notes_html}<h2>Figures</h2>{figures_html(figures(summary))}<h2>Charts</h2>{charts_html(d['charts'])}"
            f"{per_model_html(d['per_model'])}{per_priority_html(d['per_priority'])}<h2>Run</h2>{_facts(run or {}, summary)}")
    title = f"Load test {name}" if name else "Load test"
    subtitle = f"{summary.get('model', '?')} through {summary.get('url', '?')}, started {summary.get('started_at', '?')}"
    tool = summary.get("tool")
    return page(title, subtitle, body, d, tool if isinstance(tool, str) else None)
