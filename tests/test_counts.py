"""The exact request counts: the PromQL promtool tests is the PromQL the code sends, and the tallies."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmops import durations
from llmops import health as probes
from llmops.dashboard.promapi import Sample
from llmops.proxy import counts

ROOT = Path(__file__).resolve().parent.parent
PROMTOOL_TESTS = ROOT / "rules" / "tests" / "traffic_counting.test.yml"


def test_the_promtool_tested_expressions_are_the_ones_the_code_builds():
    tested = [case["expr"] for test in yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"]
              for case in test["promql_expr_test"]]
    assert tested == [counts.count_expr("5m"), counts.count_expr("1m")]


def test_the_canary_is_what_the_selector_leaves_out():
    assert probes.CANARY_USER_AGENT.startswith(counts.CANARY_PREFIX)
    assert f'user_agent!~"{counts.CANARY_PREFIX}.*"' in counts.REAL


def test_the_subquery_holds_exactly_window_over_grid_points():
    # 5m less half a 5s grid step: 60 grid points whether the left edge is open or closed.
    assert "[297s500ms:5s]" in counts.count_expr("5m")
    assert "[12s500ms:5s]" in counts.count_expr("15s")


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300), ("90s", 90), ("1h30m", 5400), ("500ms", 0.5)])
def test_durations_parse(text, seconds):
    assert durations.promql_seconds(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "m5", "5 m", "-5m"])
def test_a_bad_duration_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="is not a duration"):
        durations.promql_seconds(bad)


def test_tally_sums_classes_and_status_codes_and_rounds_float_noise():
    samples = [Sample({"status_code": "200", "requested_model": "a"}, 9.999999999),
               Sample({"status_code": "200", "requested_model": "b"}, 2.0),
               Sample({"status_code": "400", "requested_model": "a"}, 3.0),
               Sample({"status_code": "503", "requested_model": "a"}, 0.0)]
    found = counts.tally(samples)
    assert found["requests"] == 15
    assert found["outcomes"] == {"ok": 12, "client_error": 3, "rate_limited": 0, "server_error": 0, "timeout": 0}
    assert found["status_codes"] == {"200": 12, "400": 3}
    by_model = counts.tally_by(samples, "requested_model")
    assert by_model["a"]["requests"] == 13 and by_model["b"]["outcomes"]["ok"] == 2


def test_failure_summary_names_each_class_with_its_codes():
    found = counts.tally([Sample({"status_code": "400"}, 2), Sample({"status_code": "404"}, 1),
                          Sample({"status_code": "200"}, 15)])
    assert counts.failure_summary(found, "5m") == "3 of 18 requests failed in the last 5m: 3 client errors (HTTP 400, 404)"
    assert counts.failure_summary(counts.tally([Sample({"status_code": "200"}, 1)]), "5m") == ""
