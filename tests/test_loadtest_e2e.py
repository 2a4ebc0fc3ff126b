"""A kept load test through the real proxy and the embedded backend: versions asked from the real stack."""
from __future__ import annotations

import json
import re

import pytest

from llmops.traffic import cli, results
from tests.support.env import TEST_ENV

pytestmark = pytest.mark.integration


def test_make_load_test_style_sweep_keeps_a_report_with_the_stacks_real_versions(ensure_stack_ready, tmp_path,
                                                                                  monkeypatch, capsys):
    stack = ensure_stack_ready
    for name, value in TEST_ENV.items():  # the CLI finds the proxy, key and backends as a user's shell would
        monkeypatch.setenv(name, value)
    root = tmp_path / "kept"
    code = cli.main(["--sweep", "1,2", "--max", "3", "--max-tokens", "8", "--seed", "3", "--no-progress",
                     "--results-dir", str(root), "--name", "load-test"])
    out = capsys.readouterr().out
    assert code == 0, out
    (run_dir,) = [p for p in root.iterdir() if results.RUN_NAME.match(p.name)]
    assert out.strip().splitlines()[-1] == f"report: {results.shown_path(run_dir / 'report.html')}"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["stack"]["proxy"]["version"] == "1.108.7" and run["model"] in run["stack"]["proxy"]["models"]
    backend = run["stack"]["backends"][0]
    assert backend["url"] == stack.settings.ollama_url and backend["version"] != "unknown"
    assert str(stack.settings.model_tag) in [m["name"] for m in backend["models"]]
    for f in run_dir.iterdir():
        assert stack.key not in f.read_text(), f.name
    summary = json.loads((run_dir / "summary.json").read_text())
    page = (run_dir / "report.html").read_text()
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))
    assert data["summary"] == summary and summary["requests"]["ok"] == 6
    sweep = next(c for c in data["charts"] if c["id"] == "sweep-throughput")
    assert [x for x, _ in sweep["series"][0]["data"]] == [1, 2]
    assert [y for _, y in sweep["series"][0]["data"]] == [round(lv["throughput"]["requests_per_s"], 4)
                                                           for lv in summary["sweep"]]
