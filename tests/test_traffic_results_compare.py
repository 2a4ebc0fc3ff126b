"""--compare RUN_A RUN_B: the ratios of two recorded runs, printed and drawn on the same axes."""
import json
import re

import pytest

from llmops.traffic import cli, results
from llmops.traffic.results import compare
from llmops.traffic.sweep import knee
from tests.support.loadtest_runs import records, summary, write_run

DATA = re.compile(r'<script type="application/json" id="report-data">(.*?)</script>', re.S)


def main(*argv):
    try:
        return cli.main(list(argv))
    except SystemExit as exc:
        return exc.code


@pytest.fixture
def two_runs(tmp_path):
    a = write_run(tmp_path, "20261201T100000Z-before", summary(rps=10.0, p50=0.2, ttft=0.08, itl=0.02, total=20,
                                                                tokens_per_s=100.0), records(20, latency=0.2))
    b = write_run(tmp_path, "20261201T110000Z-after", summary(rps=15.0, p50=0.1, ttft=0.08, itl=0.025, total=20, ok=19,
                                                               tokens_per_s=150.0), records(30, latency=0.1, gap=0.05))
    return tmp_path, a, b


def test_ratios_of_two_recorded_runs(two_runs):
    _, a, b = two_runs
    rows = {r["metric"]: r for r in compare.comparison(json.loads((a / "summary.json").read_text()),
                                                       json.loads((b / "summary.json").read_text()))}
    assert rows["throughput"]["ratio"] == pytest.approx(1.5) and rows["throughput"]["verdict"] == "better"
    assert rows["output tokens/s"]["ratio"] == pytest.approx(1.5)
    assert rows["latency p50"]["ratio"] == pytest.approx(0.5) and rows["latency p50"]["verdict"] == "better"
    assert rows["latency p99"]["ratio"] == pytest.approx(0.5)
    assert rows["inter-token p50"]["ratio"] == pytest.approx(1.25) and rows["inter-token p50"]["verdict"] == "worse"
    assert rows["TTFT p50"]["ratio"] == pytest.approx(1.0) and rows["TTFT p50"]["verdict"] is None
    assert rows["ok"]["ratio"] == pytest.approx(0.95)
    # A was error-free: B/A of an error ratio from zero has no ratio, and is not a division error.
    assert rows["error ratio"]["a"] == 0.0 and rows["error ratio"]["ratio"] is None


def test_cli_compare_prints_the_ratios_and_draws_both_runs_on_one_page(two_runs, capsys):
    root, a, b = two_runs
    # One by folder path, one by its name in the results folder.
    assert main("--compare", str(a), b.name, "--results-dir", str(root)) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "throughput" in ln)
    assert "10.00 req/s" in line and "15.00 req/s" in line and "1.500" in line and "+50.0%" in line
    line = next(ln for ln in out.splitlines() if "latency p50" in ln)
    assert "200.0 ms" in line and "100.0 ms" in line and "0.500" in line and "-50.0%" in line
    page_path = root / "comparisons" / f"{a.name}--vs--{b.name}.html"
    assert out.strip().splitlines()[-1].endswith(page_path.name)
    data = json.loads(DATA.search(page_path.read_text()).group(1))
    assert data["kind"] == "compare" and data["a"]["name"] == a.name and data["b"]["name"] == b.name
    assert {r["metric"]: r["ratio"] for r in data["rows"]}["throughput"] == pytest.approx(1.5)
    charts = {c["id"]: c for c in data["charts"]}
    lat = charts["cmp-latency_s"]
    assert [s["name"] for s in lat["series"]] == [a.name, b.name]
    assert lat["series"][0]["data"][0] == 200.0 and lat["series"][1]["data"][0] == 100.0
    hist = charts["cmp-histogram"]  # both on the same bins
    assert sum(hist["series"][0]["data"]) == 20 and sum(hist["series"][1]["data"]) == 30
    assert len(hist["series"][0]["data"]) == len(hist["series"][1]["data"]) == len(hist["labels"])
    tl = charts["cmp-timeline"]
    assert sum(x or 0 for x in tl["series"][0]["data"]) == 20 and sum(x or 0 for x in tl["series"][1]["data"]) == 30
    assert 'tr data-metric="throughput" class="better"' in page_path.read_text()


def test_compare_of_two_sweeps_matches_levels_and_draws_both_curves(tmp_path):
    def sweep_doc(rates):
        levels = [{"concurrency": c, **summary(rps=r, p50=0.1 * c)} for c, r in zip((1, 2, 4), rates, strict=True)]
        return summary(sweep=levels, knee=knee([(x["concurrency"], x["throughput"]["requests_per_s"]) for x in levels]))
    a = write_run(tmp_path, "20261201T100000Z-a", sweep_doc((3.0, 3.1, 3.1)), records())
    b = write_run(tmp_path, "20261201T110000Z-b", sweep_doc((3.0, 6.0, 9.0)), records())
    rows = {r["metric"]: r for r in compare.comparison(results.load_run(a).summary, results.load_run(b).summary)}
    assert rows["c=4 throughput"]["ratio"] == pytest.approx(9.0 / 3.1)
    assert rows["knee concurrency"]["a"] == 1 and rows["knee concurrency"]["b"] is None
    charts = {c["id"]: c for c in compare.compare_charts(results.load_run(a), results.load_run(b))}
    names = [s["name"] for s in charts["sweep-throughput"]["series"]]
    assert names == [f"{a.name}: requests/s", f"{b.name}: requests/s"]
    assert charts["sweep-throughput"]["mark_x"] == 1


def test_a_summary_file_can_stand_for_a_run(two_runs, capsys):
    root, a, b = two_runs
    assert main("--compare", str(a / "summary.json"), str(b), "--results-dir", str(root)) == 0
    assert "1.500" in capsys.readouterr().out


@pytest.mark.parametrize("make_bad, words", [
    (lambda root: str(root / "20261201T090000Z-nothing"), "no such run folder"),
    (lambda root: write_run(root, "20261201T090000Z-crashed", lines=records(2)).name, "incomplete run"),
    (lambda root: (root / "x.json").write_text("{}") and str(root / "x.json"), "not a load-test summary"),
])
def test_a_bad_run_reference_is_one_line_and_exit_2(two_runs, capsys, make_bad, words):
    root, a, _ = two_runs
    assert main("--compare", str(a), make_bad(root), "--results-dir", str(root)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err
