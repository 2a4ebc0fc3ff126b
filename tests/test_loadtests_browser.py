"""Load-test reports and the dashboard's Load tests section in a real headless Chromium (Debian's)."""
from __future__ import annotations

import os
import threading

import pytest

from llmops.dashboard.app import create_app
from llmops.telemetry.gpu import GpuReader
from llmops.traffic import cli, results
from llmops.traffic.sweep import knee
from tests.support.browser import ARTIFACTS, CANVAS_INK, open_page
from tests.support.fakes.dashboard import FakeHTTP, healthy_stack, make_settings
from tests.support.fakes.gpu import FakeNVML
from tests.support.fakes.traffic import KEY, FakeOpenAI
from tests.support.loadtest_runs import records, summary, write_run

pytestmark = pytest.mark.browser

CHART_DATA = """id => { const c = document.querySelector(`figure[data-chart="${id}"] canvas`);
  const ch = c && Chart.getChart(c); return ch ? ch.data.datasets.map(d => d.data.length) : null; }"""


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """A results folder: a real run against the fake server, a sweep, and a run that crashed."""
    root = tmp_path_factory.mktemp("loadtests")
    codes = []
    with FakeOpenAI([{"ttft": 0.02, "token_delay": 0.005, "tokens": 5}, {"status": 503}]) as fake:
        # In a thread: Playwright's sync API already runs an event loop in this one.
        worker = threading.Thread(target=lambda: codes.append(cli.main(
            ["--url", fake.url, "--api-key", KEY, "--max", "12", "--concurrency", "3", "--no-progress",
             "--max-error-ratio", "0.6", "--results-dir", str(root), "--name", "fake"])))
        worker.start()
        worker.join(60)
    assert codes == [0]
    levels = [{"concurrency": c, **summary(rps=r, p50=lat)} for c, r, lat in ((1, 3.0, 0.3), (2, 5.5, 0.35), (4, 5.7, 0.7))]
    write_run(root, "20991201T100000Z-sweep", summary(sweep=levels, knee=knee([(1, 3.0), (2, 5.5), (4, 5.7)])),
              records())
    write_run(root, "20261201T090000Z-crashed", lines=records(2))
    return root


def test_a_report_opened_from_disk_draws_its_charts_offline_without_errors(browser, kept):  # noqa: F811 - the imported Chromium fixture
    run = next(r for r in results.list_runs(kept) if r.name.endswith("-fake"))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, fetched = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: fetched.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
    page.goto((run.path / "report.html").as_uri())
    page.wait_for_function("document.body.dataset.chartsDrawn > 0", timeout=10_000)
    for chart in ("timeline", "histogram", "pct-ttft_s", "pct-itl_s", "tokens"):
        page.wait_for_function(f"() => ({CANVAS_INK})('figure[data-chart=\"{chart}\"] canvas') > 500", timeout=10_000)
    # Chart.js holds the embedded numbers: one bar per time bin for each outcome.
    lengths = page.evaluate(CHART_DATA, "timeline")
    data = page.evaluate("JSON.parse(document.getElementById('report-data').textContent)")
    assert lengths == [len(data["timeline"]["t"])] * len(data["timeline"]["outcomes"]) and len(lengths) == 2
    assert page.evaluate(CHART_DATA, "pct-ttft_s") == [3]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "loadtest-report.png"), full_page=True)
    assert errors == [] and fetched == []
    page.close()


def serve(root):
    import waitress

    app = create_app({"SETTINGS": make_settings(LLMOPS_LOADTEST_DIR=str(root)), "HTTP_SESSION": FakeHTTP(healthy_stack()),
                      "START_MONITOR": False, "GPU_READER": GpuReader(FakeNVML()),
                      "SERVICE_PIDS": lambda: {"dashboard": os.getpid()}})
    for _ in range(2):
        app.extensions["llmops"]["monitor"].run_once()
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    return f"http://127.0.0.1:{server.effective_port}", server


def test_dashboard_load_tests_section_lists_runs_draws_a_chart_and_opens_a_report(browser, kept):  # noqa: F811 - the imported Chromium fixture
    base, server = serve(kept)
    try:
        page, errors = open_page(browser, base)
        page.wait_for_selector("#loadtests-runs tbody tr[data-status='incomplete']", timeout=10_000)
        rows = page.locator("#loadtests-runs tbody tr")
        assert rows.count() == 3
        sweep = page.locator("#loadtests-runs tr[data-run='20991201T100000Z-sweep']").inner_text()
        assert "complete" in sweep and "200.0 ms" in sweep and "10.00" in sweep
        assert "crashed or is still running" in page.locator("#loadtests-runs tr[data-status='incomplete']").inner_text()
        page.wait_for_function(f"() => ({CANVAS_INK})('#loadtests-chart canvas') > 500", timeout=10_000)
        # The sweep is dated 2099, so it stays the newest whenever the test runs.
        labels = page.evaluate("Chart.getChart(document.querySelector('#loadtests-chart canvas')).data.labels")
        assert labels[-1] == "12/01 10:00 sweep" and len(labels) == 2 and labels[0].endswith(" fake")
        page.locator("#loadtests").screenshot(path=str(ARTIFACTS / "dashboard-loadtests.png"))
        # The report served by the dashboard, under its Content-Security-Policy, draws too.
        with page.context.expect_page() as opened:
            page.locator("#loadtests-runs tr[data-run='20991201T100000Z-sweep'] a").click()
        report = opened.value
        report_errors: list[str] = []
        report.on("console", lambda m: report_errors.append(m.text) if m.type == "error" else None)
        report.on("pageerror", lambda e: report_errors.append(str(e)))
        report.wait_for_function(f"() => ({CANVAS_INK})('figure[data-chart=\"sweep-throughput\"] canvas') > 500",
                                 timeout=10_000)
        assert report.evaluate(CHART_DATA, "sweep-latency") == [3, 3]
        assert errors == [] and report_errors == []
    finally:
        server.close()


def test_a_comparison_page_draws_both_runs(browser, kept, tmp_path):  # noqa: F811 - the imported Chromium fixture
    a, b = [r for r in results.list_runs(kept) if r.complete]
    assert cli.main(["--compare", str(a.path), str(b.path), "--results-dir", str(tmp_path)]) == 0
    (page_path,) = (tmp_path / "comparisons").iterdir()
    page, errors = open_page(browser, page_path.as_uri())
    page.wait_for_function(f"() => ({CANVAS_INK})('figure[data-chart=\"cmp-latency_s\"] canvas') > 500", timeout=10_000)
    assert page.evaluate(CHART_DATA, "cmp-latency_s") == [4, 4]
    page.screenshot(path=str(ARTIFACTS / "loadtest-compare.png"), full_page=True)
    assert errors == []


def test_load_tests_section_fits_a_phone_width(browser, kept):  # noqa: F811 - the imported Chromium fixture
    base, server = serve(kept)
    try:
        page, errors = open_page(browser, base, width=390, height=844)
        page.wait_for_selector("#loadtests-runs tbody tr", timeout=10_000)
        page.wait_for_function(f"() => ({CANVAS_INK})('#loadtests-chart canvas') > 200", timeout=10_000)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert errors == []
    finally:
        server.close()


def test_a_capacity_answer_is_on_the_dashboard_and_its_report_draws_the_slo_lines(browser, tmp_path):  # noqa: F811 - the imported Chromium fixture
    root = tmp_path / "loadtests"
    codes = []
    with FakeOpenAI([{"ttft": 0.01, "tokens": 3}]) as fake:
        worker = threading.Thread(target=lambda: codes.append(cli.main(
            ["--url", fake.url, "--api-key", KEY, "--capacity", "--sweep", "1,2", "--max", "4", "--no-progress",
             "--slo", "ttft_p95<=30s,errors<=1%", "--results-dir", str(root)])))
        worker.start()
        worker.join(60)
    assert codes == [0]
    base, server = serve(root)
    try:
        page, errors = open_page(browser, base)
        page.wait_for_selector("#loadtests-capacity:not([hidden])", timeout=10_000)
        text = page.locator("#loadtests-capacity").inner_text()
        assert "Capacity: 2 concurrent streams" in text and "SLO ttft_p95<=30s,errors<=1%" in text
        assert "serves 2 concurrent streams within the SLO" in text
        with page.context.expect_page() as opened:
            page.locator("#loadtests-capacity a").click()
        report = opened.value
        for chart in ("capacity-ttft_p95", "capacity-errors"):
            report.wait_for_function(f"() => ({CANVAS_INK})('figure[data-chart=\"{chart}\"] canvas') > 500",
                                     timeout=10_000)
        assert report.evaluate(CHART_DATA, "capacity-ttft_p95") == [2]
        report.screenshot(path=str(ARTIFACTS / "loadtest-capacity.png"), full_page=True)
        assert errors == []
    finally:
        server.close()
