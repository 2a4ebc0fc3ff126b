"""The capacity search: the SLO's syntax, the climb and the bisection, the answer and its warnings."""
import json

import pytest

from llmops.errors import ConfigError
from llmops.traffic import TrafficConfig, capacity, cli
from tests.support.fakes.traffic import KEY, FakeOpenAI


def level_summary(ttft_p95=0.1, itl_p95=0.02, total=200, ok=None, rate_limited=0, rps=1.0):
    """A level's summary, only the parts the capacity search reads."""
    ok = total if ok is None else ok
    return {"requests": {"total": total, "ok": ok, "rate_limited": rate_limited},
            "throughput": {"requests_per_s": rps}, "ttft_s": {"p95": ttft_p95}, "itl_s": {"p95": itl_p95},
            "latency_s": {"p95": None}, "goodput": None}


def search_against(server, levels=capacity.DEFAULT_LEVELS, slo=capacity.DEFAULT_SLO):
    """Run the search to its end against `server` (level -> summary), as the runner does."""
    search = capacity.Search(tuple(levels), capacity.parse_slo(slo))
    while (level := search.next()) is not None:
        search.record(level, server(level))
    return search.answer(slo)


def test_the_default_slo_reads_as_its_three_bounds():
    bounds = capacity.parse_slo(capacity.DEFAULT_SLO)
    assert [(b.metric, b.op, b.limit) for b in bounds] == [("ttft_p95", "<=", 2.0), ("itl_p95", "<=", 0.15),
                                                          ("errors", "<=", 0.01)]
    assert [str(b) for b in bounds] == ["ttft_p95<=2 s", "itl_p95<=150 ms", "errors<=1%"]
    assert capacity.parse_slo(" latency_p99 <= 1.5s , goodput>=0.9")[1].limit == 0.9


@pytest.mark.parametrize("text, words", [
    ("ttft_p95<2s", "not a bound like ttft_p95<=2s"),
    ("ttft_p97<=2s", "unknown metric 'ttft_p97'"),
    ("ttft_p95<=soon", "'soon' is not a duration"),
    ("errors<=lots", "'lots' is not a ratio"),
    ("errors<=150%", "within 0-100%"),
    ("errors>=1%", "goodput takes >=, the others <="),
    ("ttft_p95<=1s,ttft_p95<=2s", "bounded twice"),
    ("ttft_p95<=0s", "must be > 0"),
    (" , ", "no bound given"),
])
def test_a_bad_slo_names_the_part_that_is_wrong(text, words):
    with pytest.raises(ValueError, match=words):
        capacity.parse_slo(text)


def test_it_climbs_until_a_level_breaks_then_bisects_the_gap():
    # TTFT p95 grows by 0.3 s a stream: 6 streams are within 2 s, 7 are not.
    answer = search_against(lambda c: level_summary(ttft_p95=0.3 * c))
    assert answer["order"] == [1, 2, 4, 8, 6, 7]
    assert (answer["max_concurrency"], answer["broke_at"], answer["complete"]) == (6, 7, True)
    assert answer["broken_bound"]["metric"] == "ttft_p95" and answer["broken_bound"]["value"] == pytest.approx(2.1)
    assert answer["message"].startswith("serves 6 concurrent streams within the SLO; at 7, TTFT p95 is 2.1 s "
                                        "(bound 2 s)")
    assert "requests per level: 200 at 1, 200 at 2, 200 at 4, 200 at 6, 200 at 7, 200 at 8" in answer["message"]
    assert [lv["concurrency"] for lv in answer["levels"]] == [1, 2, 4, 6, 7, 8]
    assert [lv["within_slo"] for lv in answer["levels"]] == [True, True, True, True, False, False]


def test_every_level_within_the_slo_answers_the_top_level_asked():
    answer = search_against(lambda c: level_summary(), levels=(1, 2, 4))
    assert (answer["max_concurrency"], answer["broke_at"], answer["broken_bound"]) == (4, None, None)
    assert answer["order"] == [1, 2, 4] and "serves 4 concurrent streams within the SLO, the highest level" \
        in answer["message"]


def test_breaking_at_level_one_answers_zero_and_names_the_bound():
    answer = search_against(lambda c: level_summary(itl_p95=0.4))
    assert (answer["max_concurrency"], answer["broke_at"], answer["order"]) == (0, 1, [1])
    assert answer["message"].startswith("serves 0 concurrent streams within the SLO: at 1, ITL p95 is 400 ms "
                                        "(bound 150 ms)")


def test_levels_that_start_above_one_bisect_down_to_one():
    answer = search_against(lambda c: level_summary(ttft_p95=1.5 * c), levels=(4, 8))
    assert answer["order"] == [4, 2, 1] and (answer["max_concurrency"], answer["broke_at"]) == (1, 2)


def test_a_429_counts_as_an_error_for_capacity():
    answer = search_against(lambda c: level_summary(total=200, ok=200 - 4 * c, rate_limited=4 * c), levels=(1, 2))
    # 4 of 200 refused at level 1 is 2%: over errors<=1%, though the generator's error ratio leaves 429s out.
    assert answer["max_concurrency"] == 0 and answer["broken_bound"]["metric"] == "errors"
    assert answer["levels"][0]["error_ratio"] == pytest.approx(0.02) and "errors is 2%" in answer["message"]


def test_a_figure_that_was_not_measured_breaks_its_bound():
    answer = search_against(lambda c: level_summary(itl_p95=None), levels=(1, 2))
    assert answer["max_concurrency"] == 0 and "ITL p95 is not measured" in answer["message"]


def test_too_few_requests_to_judge_the_error_bound_is_warned_about():
    answer = search_against(lambda c: level_summary(total=40 if c == 1 else 500), levels=(1, 2))
    assert answer["warnings"] == ["concurrency 1: 40 requests, so one error is already 2.5%, over errors<=1%; "
                                  "100+ requests judge it (a longer --duration or a higher --max)"]


def test_an_interrupted_search_says_so():
    search = capacity.Search((1, 2, 4), capacity.parse_slo(capacity.DEFAULT_SLO))
    search.record(search.next(), level_summary())
    answer = search.answer(capacity.DEFAULT_SLO, interrupted=True)
    assert not answer["complete"] and answer["message"].startswith("interrupted: within the SLO up to 1")


@pytest.mark.parametrize("config, words", [
    (dict(capacity=True, rate=2), "--capacity: climbs closed-loop concurrency levels"),
    (dict(capacity=True, concurrency=4), "--capacity: sets the concurrency levels itself"),
    (dict(capacity=True, slo="ttft_p95<2s"), "--slo: 'ttft_p95<2s' is not a bound"),
    (dict(capacity=True, stream=False), "--slo: ttft_p95<=2 s needs streamed chat completions"),
    (dict(capacity=True, slo="goodput>=90%"), "--slo: a goodput bound needs --slo-ttft or --slo-latency"),
    (dict(slo="errors<=1%"), "--slo: bounds a --capacity run"),
    (dict(capacity=True, sweep=(4, 2)), "--sweep: needs rising levels"),
])
def test_capacity_flags_are_checked_before_anything_is_sent(config, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        TrafficConfig(**config).validate()


def test_a_capacity_run_through_the_cli_answers_in_one_line_and_in_the_summary(capsys, tmp_path):
    summary = tmp_path / "s.json"
    with FakeOpenAI([{"ttft": 0.01, "tokens": 3}]) as fake:
        code = cli.main(["--url", fake.url, "--api-key", KEY, "--capacity", "--sweep", "1,2", "--max", "4",
                         "--slo", "ttft_p95<=30s,errors<=1%", "--no-progress", "--summary-json", str(summary)])
    assert code == 0
    assert len(fake.requests) == 8  # 4 a level
    err = capsys.readouterr().err
    assert "serves 2 concurrent streams within the SLO, the highest level asked" in err
    assert "warning: concurrency 1: 4 requests, so one error is already 25%" in err
    doc = json.loads(summary.read_text())
    cap = doc["capacity"]
    assert cap["max_concurrency"] == 2 and cap["slo"] == "ttft_p95<=30s,errors<=1%"
    assert [lv["requests"] for lv in cap["levels"]] == [4, 4] and doc["verdict"] == cap["message"]
    assert [lv["concurrency"] for lv in doc["sweep"]] == [1, 2]


def test_an_impossible_slo_answers_zero_at_level_one(capsys, tmp_path):
    summary = tmp_path / "s.json"
    with FakeOpenAI([{"ttft": 0.02, "tokens": 3}]) as fake:
        code = cli.main(["--url", fake.url, "--api-key", KEY, "--capacity", "--max", "3",
                         "--slo", "ttft_p95<=1ms", "--no-progress", "--summary-json", str(summary)])
    assert code == 0 and len(fake.requests) == 3  # level 1 only
    cap = json.loads(summary.read_text())["capacity"]
    assert (cap["max_concurrency"], cap["broke_at"], cap["broken_bound"]["metric"]) == (0, 1, "ttft_p95")
    assert "serves 0 concurrent streams within the SLO: at 1, TTFT p95 is" in capsys.readouterr().err


def test_the_report_draws_each_bound_against_concurrency_with_its_slo_line(tmp_path):
    from llmops.traffic import results
    from tests.test_traffic_results_htmlreport import embedded
    root = tmp_path / "kept"
    with FakeOpenAI([{"ttft": 0.01, "tokens": 3}]) as fake:
        assert cli.main(["--url", fake.url, "--api-key", KEY, "--capacity", "--sweep", "1,2", "--max", "4",
                         "--slo", "ttft_p95<=30s,errors<=1%", "--no-progress", "--results-dir", str(root)]) == 0
    (run,) = results.list_runs(root)
    assert run.run["kind"] == "capacity" and run.name.endswith("-capacity")
    page = (run.path / "report.html").read_text()
    data = embedded(page)
    charts = {c["id"]: c for c in data["charts"]}
    ttft, errors = charts["capacity-ttft_p95"], charts["capacity-errors"]
    assert (ttft["mark_y"], ttft["mark_y_label"], ttft["mark_x"]) == (30000.0, "SLO ttft_p95<=30 s", 2)
    assert [x for x, _ in ttft["series"][0]["data"]] == [1, 2] and all(y > 0 for _, y in ttft["series"][0]["data"])
    assert (errors["mark_y"], errors["series"][0]["data"]) == (1.0, [[1, 0.0], [2, 0.0]])
    assert data["figures"]["capacity"] == "2 streams"
    assert "serves 2 concurrent streams within the SLO" in page and "warning: concurrency 1: 4 requests" in page
