"""The dashboard's Load tests section: kept runs listed with headline figures, files served read-only."""
from __future__ import annotations

import json
import os

import pytest

from llmops.dashboard.app import create_app
from llmops.telemetry.gpu import GpuReader
from tests.support.fakes.dashboard import KEY, FakeHTTP, healthy_stack, make_settings
from tests.support.fakes.gpu import FakeNVML
from tests.support.loadtest_runs import records, summary, write_run


def build(root):
    app = create_app({"SETTINGS": make_settings(LLMOPS_LOADTEST_DIR=str(root)), "HTTP_SESSION": FakeHTTP(healthy_stack()),
                      "START_MONITOR": False, "GPU_READER": GpuReader(FakeNVML()),
                      "SERVICE_PIDS": lambda: {"dashboard": os.getpid()}})
    return app.test_client()


@pytest.fixture
def kept(tmp_path):
    root = tmp_path / "loadtests"
    good = write_run(root, "20261201T100000Z-good", summary(rps=12.5, p50=0.25, ttft=0.06), records())
    crashed = write_run(root, "20261201T103000Z-crashed", lines=records(3))
    with open(crashed / "requests.jsonl", "a") as f:
        f.write('{"id": 4, "sta')  # killed mid-line
    corrupt = write_run(root, "20261201T104000Z-corrupt", summary_doc=None)
    (corrupt / "summary.json").write_text("{not json")
    (corrupt / "run.json").write_bytes(b"\x00\xff garbage")
    unreadable = write_run(root, "20261201T105000Z-noaccess", summary(), records(), report=False)
    (root / "comparisons").mkdir()
    (root / "notes.txt").write_text("not a run")
    return root, good, crashed, corrupt, unreadable


def test_runs_are_listed_newest_first_with_headline_figures_and_report_links(kept):
    root, good, crashed, corrupt, unreadable = kept
    client = build(root)
    r = client.get("/api/loadtests")
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["available"] is True
    names = [x["name"] for x in doc["runs"]]
    assert names == [unreadable.name, corrupt.name, crashed.name, good.name]
    row = doc["runs"][-1]
    assert row["status"] == "complete" and row["requests_per_s"] == 12.5 and row["latency_p50_s"] == 0.25
    assert row["ttft_p50_s"] == 0.06 and row["requests"] == 20 and row["error_ratio"] == 0.0
    assert row["report_url"] == f"/loadtests/{good.name}/report.html"
    page = client.get(row["report_url"])
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.data == (good / "report.html").read_bytes()
    assert client.get(row["summary_url"]).get_json()["throughput"]["requests_per_s"] == 12.5
    # No report drawn (yet): listed, not linked.
    assert doc["runs"][0]["status"] == "complete" and doc["runs"][0]["report_url"] is None


def test_crashed_and_corrupt_runs_are_listed_as_incomplete_never_a_500(kept):
    root, _, crashed, corrupt, _ = kept
    doc = build(root).get("/api/loadtests").get_json()
    rows = {x["name"]: x for x in doc["runs"]}
    assert rows[crashed.name]["status"] == "incomplete" and "crashed" in rows[crashed.name]["reason"]
    assert rows[corrupt.name]["status"] == "incomplete" and "unreadable" in rows[corrupt.name]["reason"]
    assert rows[corrupt.name]["report_url"] is None and rows[corrupt.name].get("requests_per_s") is None


def test_a_run_folder_that_cannot_be_read_is_incomplete(kept, monkeypatch):
    root, _, _, _, unreadable = kept
    from pathlib import Path

    real = Path.read_text

    def deny(self, *a, **kw):
        if self.parent == unreadable:
            raise PermissionError(13, "Permission denied")
        return real(self, *a, **kw)
    monkeypatch.setattr(Path, "read_text", deny)
    r = build(root).get("/api/loadtests")
    assert r.status_code == 200
    row = next(x for x in r.get_json()["runs"] if x["name"] == unreadable.name)
    assert row["status"] == "incomplete" and "Permission denied" in row["reason"]


def test_no_results_folder_yet_is_a_status_not_an_error(tmp_path):
    r = build(tmp_path / "never-made").get("/api/loadtests")
    assert r.status_code == 200
    assert r.get_json() == {"available": False, "folder": "never-made", "runs": [], "last_capacity": None,
                            "detail": "no load test kept yet: run `make load-test`"}


@pytest.mark.parametrize("path", [
    "/loadtests/..%2F..%2F.env/report.html",
    "/loadtests/../../.env",
    "/loadtests/20261201T100000Z-good/..%2Frun.json",
    "/loadtests/20261201T100000Z-good/%2e%2e/report.html",
    "/loadtests/20261201T100000Z-good/notes.txt",
    "/loadtests/20261201T100000Z-good/report.html.tmp",
    "/loadtests/comparisons/report.html",
    "/loadtests/20261201T100000Z-good/",
    "/loadtests/20261201T100000Z-missing/report.html",
    "/loadtests/20261201T100000Z-escape/report.html",
    "/loadtests/20261201T100000Z-link/report.html",
])
def test_nothing_outside_a_run_folders_known_files_is_served(kept, tmp_path, path):
    root, good, *_ = kept
    (tmp_path / ".env").write_text(f"LITELLM_MASTER_KEY={KEY}\n")
    (good / "notes.txt").write_text("private")
    (good / "report.html.tmp").write_text("half")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "report.html").write_text("outside the results folder")
    (root / "20261201T100000Z-escape").symlink_to(outside)  # a folder symlinked out
    (root / "20261201T100000Z-link").mkdir()
    (root / "20261201T100000Z-link" / "report.html").symlink_to(outside / "report.html")  # a file symlinked out
    r = build(root).get(path)
    assert r.status_code in (404, 308), (path, r.status_code)
    assert b"outside the results folder" not in r.data and b"private" not in r.data and KEY.encode() not in r.data
    if r.status_code == 404:
        assert r.is_json and r.get_json()["status"] == 404


def test_the_routes_are_read_only(kept):
    root, good, *_ = kept
    client = build(root)
    for method in (client.post, client.put, client.delete):
        assert method(f"/loadtests/{good.name}/report.html").status_code == 405
        assert method("/api/loadtests").status_code == 405
    assert (good / "report.html").exists()


def test_a_kept_file_holding_the_key_is_redacted_when_served(kept):
    root, good, *_ = kept
    doc = json.loads((good / "run.json").read_text())
    doc["note"] = f"pasted {KEY} by hand"
    (good / "run.json").write_text(json.dumps(doc))
    r = build(root).get(f"/loadtests/{good.name}/run.json")
    assert r.status_code == 200 and KEY.encode() not in r.data and b"[redacted]" in r.data


def test_the_page_has_the_load_tests_section_and_its_script(kept):
    root, *_ = kept
    client = build(root)
    page = client.get("/").data.decode()
    assert 'id="loadtests"' in page and "/static/loadtests.js" in page
    assert client.get("/static/loadtests.js").status_code == 200


def test_the_last_capacity_answer_is_shown_with_its_date_model_and_slo(tmp_path):
    root = tmp_path / "loadtests"
    cap = {"max_concurrency": 6, "broke_at": 7, "slo": "ttft_p95<=2s", "complete": True, "levels": [],
           "message": "serves 6 concurrent streams within the SLO; at 7, TTFT p95 is 2.1 s (bound 2 s)"}
    older = write_run(root, "20261201T100000Z-capacity", summary(capacity=cap, started_at="2026-12-01T10:00:00+00:00"),
                      records())
    write_run(root, "20261201T110000Z-later", summary(), records())  # a newer run that is not a capacity run
    doc = build(root).get("/api/loadtests").get_json()
    last = doc["last_capacity"]
    assert last["name"] == older.name and last["max_concurrency"] == 6 and last["slo"] == "ttft_p95<=2s"
    assert last["model"] == "smollm2:135m" and last["started_at"] == "2026-12-01T10:00:00+00:00"
    assert last["message"] == cap["message"] and last["report_url"] == f"/loadtests/{older.name}/report.html"
    assert doc["runs"][0]["capacity"] is None
    assert build(tmp_path / "none").get("/api/loadtests").get_json()["last_capacity"] is None
