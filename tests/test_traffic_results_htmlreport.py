"""report.html: the figures the summary holds, embedded and shown; self-contained; tolerant of new fields."""
import html
import json
import re

from llmops.traffic import cli, results
from llmops.traffic.results import htmlreport
from llmops.traffic.sweep import knee
from tests.support.fakes.traffic import KEY, FakeOpenAI
from tests.support.loadtest_runs import records, summary, write_run

DATA = re.compile(r'<script type="application/json" id="report-data">(.*?)</script>', re.S)


def embedded(page: str) -> dict:
    return json.loads(DATA.search(page).group(1))


def run_against_fake(tmp_path, plan, *flags) -> tuple[dict, str]:
    root = tmp_path / "kept"
    with FakeOpenAI(plan) as fake:
        code = cli.main(["--url", fake.url, "--api-key", KEY, "--no-progress", "--results-dir", str(root), *flags])
    assert code in (0, 1)
    (run_dir,) = [p for p in root.iterdir() if results.RUN_NAME.match(p.name)]
    return json.loads((run_dir / "summary.json").read_text()), (run_dir / "report.html").read_text()


def test_report_of_a_run_with_known_delays_embeds_and_shows_the_summarys_figures(tmp_path):
    # ttft 40 ms then 4 more tokens 10 ms apart; every third request a 503.
    plan = [{"ttft": 0.04, "token_delay": 0.01, "tokens": 5}, {"ttft": 0.04, "token_delay": 0.01, "tokens": 5},
            {"status": 503}]
    s, page = run_against_fake(tmp_path, plan, "--max", "12", "--concurrency", "3", "--max-error-ratio", "0.5")
    data = embedded(page)
    assert data["summary"] == s
    assert s["requests"]["ok"] == 8 and s["requests"]["failed"] == 4
    # The delays the fake was told to add are what the page reports (lower bounds: the fake adds them).
    assert data["percentiles"]["ttft_s"]["p50"] >= 0.04 and data["percentiles"]["itl_s"]["p50"] >= 0.01
    for key in ("latency_s", "ttft_s", "itl_s"):
        for p in ("p50", "p90", "p99"):
            assert data["percentiles"][key][p] == s[key][p]
    # What the page shows in words is the summary's figures, formatted.
    text = html.unescape(re.sub(r"<[^>]+>", " ", page.split('<script type="application/json"')[0]))
    for label, value in (("TTFT p50", s["ttft_s"]["p50"]), ("inter-token p99", s["itl_s"]["p99"]),
                         ("latency p95", s["latency_s"]["p95"])):
        assert f"{label} {htmlreport.fmt_ms(value)}" in " ".join(text.split())
    assert data["figures"]["throughput"] == f"{s['throughput']['requests_per_s']:,.2f} req/s"
    # Each class that occurred is a figure of its own, named as the dashboard names it.
    assert (data["figures"]["failed"], data["figures"]["server error (5xx)"]) == ("4", "4")
    assert "timeout" not in data["figures"] and "cancelled (not counted)" not in data["figures"]
    assert data["figures"]["output tokens/s"] == f"{s['throughput']['output_tokens_per_s']:,.1f} tok/s"
    # Charts: every request in the timeline once, by outcome; every success in the histogram.
    tl = data["timeline"]
    assert {k: sum(v) for k, v in tl["outcomes"].items()} == {"ok": 8, "server_error": 4}
    assert sum(data["histogram"]["counts"]) == 8
    assert round(sum(tl["tokens_per_s"]) * tl["bin_s"]) == s["tokens"]["completion"] == 40
    ids = {c["id"] for c in data["charts"]}
    assert {"timeline", "tokens", "histogram", "pct-ttft_s", "pct-itl_s"} <= ids
    pct = next(c for c in data["charts"] if c["id"] == "pct-ttft_s")
    assert pct["series"][0]["data"] == [htmlreport.ms(s["ttft_s"][p]) for p in ("p50", "p90", "p99")]
    assert 'data-chart="timeline"' in page and "<canvas" in page


def test_report_is_self_contained(tmp_path):
    _, page = run_against_fake(tmp_path, [{"tokens": 2}], "--max", "2")
    head = page.split("<script>")[0]
    assert "<script src" not in page and "<link rel=\"stylesheet\"" not in page
    assert not re.search(r'(src|href)="(https?:)?//', head)
    assert "Chart.js v" + htmlreport.chartjs_version() in page  # the vendored library's banner, inlined
    assert (htmlreport.chartjs_dir() / "chart.umd.min.js").read_text() in page


def test_sweep_report_draws_throughput_and_latency_against_concurrency_with_the_knee(tmp_path):
    levels = [{"concurrency": c, **summary(rps=r, p50=lat)} for c, r, lat in
              ((1, 3.0, 0.3), (2, 5.5, 0.35), (4, 5.7, 0.7), (8, 5.8, 1.4))]
    doc = summary(sweep=levels, knee=knee([(x["concurrency"], x["throughput"]["requests_per_s"]) for x in levels]))
    path = write_run(tmp_path, "20261201T100000Z-sweep", doc, records())
    data = embedded((path / "report.html").read_text())
    thr = next(c for c in data["charts"] if c["id"] == "sweep-throughput")
    lat = next(c for c in data["charts"] if c["id"] == "sweep-latency")
    assert thr["series"][0]["data"] == [[1, 3.0], [2, 5.5], [4, 5.7], [8, 5.8]]
    assert [s["name"] for s in lat["series"]] == ["p50", "p95"]
    assert lat["series"][1]["data"][2] == [4, 1225.0]  # p95 = 1.75 x p50 of 0.7 s, in ms
    assert thr["mark_x"] == lat["mark_x"] == 2 and thr["mark_label"] == "knee"
    assert "throughput stops growing at concurrency 2" in (path / "report.html").read_text()


def test_report_tolerates_extra_fields_and_draws_one_series_per_model(tmp_path):
    lines = [dict(r, call_id=f"c{i}", endpoint="chat", model="small" if i % 2 else "large",
                  latency_s=0.1 if i % 2 else 0.3) for i, r in enumerate(records(10))]
    lines.append({"id": 99, "phase": "warmup", "status": "ok", "start_s": 0.0, "latency_s": 9.0, "model": "small"})
    doc = summary(per_model={"small": {"requests": 5}}, new_section=[1, 2, 3], latency_s={"p50": 0.2, "weird": "x"})
    path = write_run(tmp_path, "20261201T100000Z-mix", doc, lines)
    data = embedded((path / "report.html").read_text())
    by_model = {m["model"]: m for m in data["per_model"]}
    assert by_model["small"]["requests"] == 5 and by_model["small"]["latency_p50_s"] == 0.1
    assert by_model["large"]["latency_p50_s"] == 0.3
    chart = next(c for c in data["charts"] if c["id"] == "per-model")
    assert chart["labels"] == ["large", "small"]
    assert sum(data["histogram"]["counts"]) == 10  # the warmup line is not counted
    assert data["percentiles"]["latency_s"]["p90"] is None


def test_a_cut_jsonl_still_gives_a_report_that_says_so(tmp_path):
    path = write_run(tmp_path, "20261201T100000Z-cut", summary(), records(4), report=False)
    with open(path / "requests.jsonl", "a") as f:
        f.write('{"id": 5, "sta')
    results.write_report(path)
    page = (path / "report.html").read_text()
    assert embedded(page)["records"] == {"lines": 4, "unreadable": 1, "statuses": {"ok": 4}}
    assert "1 line(s) of requests.jsonl could not be read" in page


def test_embedded_json_cannot_close_its_script_tag():
    text = htmlreport.embed_json({"error": "</script><script>alert(1)</script>"})
    assert "</script" not in text and json.loads(text)["error"].startswith("</script>")


def test_a_run_where_nothing_succeeded_still_gets_a_report(tmp_path):
    s, page = run_against_fake(tmp_path, [{"status": 503}], "--max", "3")
    data = embedded(page)
    assert s["requests"]["ok"] == 0 and data["histogram"] == {"edges": [], "counts": []}
    assert {c["id"] for c in data["charts"]} == {"timeline", "tokens"}
    assert data["timeline"]["outcomes"] == {"server_error": [3] + [0] * (len(data["timeline"]["t"]) - 1)}


def test_an_empty_or_interrupted_run_says_so(tmp_path):
    empty = {"count": 0, "mean": None, "p50": None, "p90": None, "p95": None, "p99": None, "max": None}
    doc = summary(total=0, interrupted=True, latency_s=empty, ttft_s=empty, itl_s=empty, tpot_s=empty)
    path = write_run(tmp_path, "20261201T100000Z-stopped", doc, [])
    page = (path / "report.html").read_text()
    assert "The run was interrupted" in page and "nothing to draw" in page
    assert embedded(page)["charts"] == []
    assert results.load_run(path).status == "interrupted"
