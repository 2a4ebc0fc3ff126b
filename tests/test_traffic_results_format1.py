"""Runs kept before the outcome classes (summary format 1) still load, draw and compare, counted in the classes.

The two fixture folders were written by the generator as of commit c4a56c0 (before the classes) against the
fake proxy: one run meeting every status it knew (a 408 among them, which it filed as http_4xx) and then
Ctrl-C with two requests in flight; one sweep with 503s and 408s. report.html was left out (it is redrawn).
"""
import json
import shutil

import pytest

from llmops.dashboard import create_app
from llmops.telemetry.gpu import GpuReader
from llmops.traffic import cli, results
from llmops.traffic.results import reportdata
from tests.support.env import ROOT
from tests.support.fakes.dashboard import FakeHTTP, healthy_stack, make_settings
from tests.support.fakes.gpu import FakeNVML
from tests.support.loadtest_runs import summary, write_run

FORMAT1 = ROOT / "tests" / "fixtures" / "loadtests-format1"
MIXED, SWEEP = "20261207T063713Z-format1", "20261207T063723Z-format1-sweep"


@pytest.fixture
def kept(tmp_path):
    root = tmp_path / "loadtests"
    shutil.copytree(FORMAT1, root)
    return root


def test_the_fixture_is_format_1():
    """The files are as the old generator wrote them: its own statuses, the cancelled inside the total."""
    doc = json.loads((FORMAT1 / MIXED / "summary.json").read_text())
    assert "format" not in doc and doc["requests"]["total"] == 12 and doc["requests"]["cancelled"] == 2
    assert doc["failures"]["http_4xx"] == 2
    lines = [json.loads(x) for x in (FORMAT1 / MIXED / "requests.jsonl").read_text().splitlines()]
    assert {(x["status"], x["http_status"]) for x in lines if x["status"] == "http_4xx"} == {("http_4xx", 408),
                                                                                          ("http_4xx", 400)}


def test_an_old_run_loads_with_every_request_in_one_class_and_the_cancelled_left_out(kept):
    stored = results.load_run(kept / MIXED)
    s = stored.summary
    assert stored.status == "interrupted" and s["format"] == 2 and s["upgraded_from"] == 1
    # 12 sent: 2 cancelled by Ctrl-C are reported, not counted; the 408 is a timeout, counted from the lines.
    assert s["requests"] == {"total": 10, "ok": 2, "failed": 8, "timed_out": 1, "rate_limited": 1, "cancelled": 2}
    assert s["outcomes"] == {"ok": 2, "client_error": 1, "rate_limited": 1, "server_error": 5, "timeout": 1,
                             "invalid_output": 0}
    assert s["details"] == {"bad_response": 1, "connection_error": 1, "http_400": 1, "http_408": 1, "http_429": 1,
                            "http_503": 1, "stream_error": 1, "truncated_stream": 1}
    assert s["error_ratio"] == pytest.approx(0.7)  # as the run judged it: 7 of 10, 429 left out
    lines, bad = results.read_records(kept / MIXED / "requests.jsonl")
    assert bad == 0 and {x["status"] for x in lines} == {"ok", "client_error", "rate_limited", "server_error",
                                                         "timeout", "cancelled"}
    assert next(x for x in lines if x["http_status"] == 408)["status"] == "timeout"


def test_an_old_summary_without_its_lines_is_counted_from_its_statuses(kept):
    (kept / MIXED / "requests.jsonl").unlink()
    s = results.load_run(kept / MIXED).summary
    # Without the status codes a format-1 4xx can only be a client error.
    assert s["outcomes"]["client_error"] == 2 and s["outcomes"]["timeout"] == 0
    assert s["requests"]["total"] == 10 and s["details"]["http_4xx"] == 2


def test_an_old_sweep_counts_each_level_and_model_in_the_classes(kept):
    s = results.load_run(kept / SWEEP).summary
    for level in s["sweep"]:
        assert level["failures"] == {"server_error": 2, "timeout": 2}, level["concurrency"]
    assert s["models"]["fake-model"]["failures"] == {"server_error": 4, "timeout": 4}
    assert reportdata.sweep(s)["levels"][0]["concurrency"] == 1


def test_an_old_run_is_drawn_with_the_classes_only(kept):
    page = results.write_report(kept / MIXED).read_text()
    data = json.loads(page.split('<script type="application/json" id="report-data">')[1].split("</script>")[0])
    tl = data["timeline"]["outcomes"]
    assert {k: sum(v) for k, v in tl.items()} == {"ok": 2, "client_error": 1, "rate_limited": 1,
                                                  "server_error": 5, "timeout": 1}
    assert data["records"]["statuses"] == {"ok": 2, "client_error": 1, "rate_limited": 1, "server_error": 5,
                                           "timeout": 1}
    assert "2 request(s) in flight when the run was interrupted were cancelled" in page
    assert data["figures"]["cancelled (not counted)"] == "2" and data["figures"]["timeout"] == "1"


def test_an_old_run_compares_with_a_new_one(kept, capsys):
    new = write_run(kept, "20261208T100000Z-new", summary(total=10, ok=10))
    assert cli.main(["--compare", MIXED, new.name, "--results-dir", str(kept)]) == 0
    assert "comparison: " in capsys.readouterr().out
    rows = {r["metric"]: r for r in results.compare.comparison(results.load_run(kept / MIXED).summary,
                                                               results.load_run(new).summary)}
    assert rows["requests"]["a"] == 10 and rows["ok"]["a"] == 2 and rows["ok"]["b"] == 10


def test_the_dashboard_lists_old_runs_with_their_counted_figures(kept):
    app = create_app({"SETTINGS": make_settings(LLMOPS_LOADTEST_DIR=str(kept)), "HTTP_SESSION": FakeHTTP(healthy_stack()),
                      "START_MONITOR": False, "GPU_READER": GpuReader(FakeNVML()), "SERVICE_PIDS": lambda: {}})
    listed = app.test_client().get("/api/loadtests").get_json()
    rows = {r["name"]: r for r in listed["runs"]}
    assert rows[MIXED]["status"] == "interrupted" and rows[MIXED]["requests"] == 10 and rows[MIXED]["ok"] == 2
    assert rows[SWEEP]["kind"] == "sweep" and rows[SWEEP]["requests"] == 16 and rows[SWEEP]["report_url"] is None
    # The kept file itself is served as it was written.
    served = app.test_client().get(rows[MIXED]["summary_url"])
    assert served.status_code == 200 and served.get_json() == json.loads((kept / MIXED / "summary.json").read_text())
