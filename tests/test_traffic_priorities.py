"""The generator's --priority-mix: parsing, seeded draws, and the per-priority report (text, summary JSON, HTML),
against the FAKE OpenAI server; kept runs from before the per-priority part still load and draw."""
import json
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from llmops.errors import ConfigError
from llmops.traffic import TrafficConfig, cli, results, run
from llmops.traffic.mix import ModelMix, ModelPicker, PriorityMix, PriorityPicker
from llmops.traffic.results import htmlreport, reportdata, text
from tests.support.fakes.traffic import KEY, FakeOpenAI
from tests.support.loadtest_runs import records, summary, write_run


def config(fake, **kw):
    kw.setdefault("max_requests", 40)
    kw.setdefault("seed", 7)
    return TrafficConfig(url=fake.url, api_key=KEY, **kw)


def lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def printed(summary_doc) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115 - closed with the console
    console.print(text.run_tables(summary_doc))
    console.file.close()
    return console.export_text()


# -- parsing and drawing --------------------------------------------------------------------------------------

def test_a_priority_mix_parses_priorities_and_percent_shares():
    mix = PriorityMix.parse("0:20, 9:80")
    assert mix.priorities == (0, 9) and mix.percents == (20.0, 80.0)
    assert mix.share(9) == 0.8 and str(mix) == "0:20,9:80"
    assert PriorityMix.parse("255:12.5,3:87.5").priorities == (255, 3)


@pytest.mark.parametrize("text, words", [
    ("0:20,9:70", "sum to 90 %, not 100"),
    ("0:20,9", "'9' is not PRIORITY:PERCENT"),
    ("high:20,9:80", "'high' is not a priority"),
    ("-1:20,9:80", "'-1' is not a priority"),
    ("256:20,9:80", "priority 256 is outside 0-255"),
    ("0:0,9:100", "the share must be a percentage > 0"),
    ("0:lots,9:80", "the share must be a percentage > 0, not 'lots'"),
    ("0:50,0:50", "priority 0 is named twice"),
    ("", "'' is not PRIORITY:PERCENT"),
])
def test_a_bad_priority_mix_is_refused_with_the_reason(text, words):
    with pytest.raises(ValueError, match=words):
        PriorityMix.parse(text)


def test_the_priority_draws_follow_the_shares_and_repeat_with_the_seed():
    mix = PriorityMix.parse("0:20,9:80")
    seq = [p for picker in [PriorityPicker(mix, seed=5)] for p in (picker.next() for _ in range(4000))]
    again = PriorityPicker(mix, seed=5)
    assert seq == [again.next() for _ in range(4000)]
    assert seq != [p for picker in [PriorityPicker(mix, seed=6)] for p in (picker.next() for _ in range(4000))]
    assert Counter(seq)[0] / len(seq) == pytest.approx(0.20, abs=0.03)


def test_the_priority_draws_do_not_follow_the_model_draws():
    """Each has its own stream: with two 50/50 mixes, a model is not tied to one priority."""
    models = ModelPicker(ModelMix.parse("a,b"), seed=3)
    priorities = PriorityPicker(PriorityMix.parse("0:50,9:50"), seed=3)
    pairs = Counter((models.next(), priorities.next()) for _ in range(2000))
    assert len(pairs) == 4 and min(pairs.values()) > 350


def test_the_config_refuses_a_mix_with_priority_or_with_embeddings():
    with pytest.raises(ConfigError, match="--priority-mix: cannot be combined with --priority"):
        TrafficConfig(url="http://127.0.0.1:1", priority=3, priority_mix="0:50,9:50").validate()
    with pytest.raises(ConfigError, match="--priority-mix: orders chat requests"):
        TrafficConfig(url="http://127.0.0.1:1", model="m", endpoint="embeddings", priority_mix="0:50,9:50").validate()


@pytest.mark.parametrize("argv, words", [
    (["--priority-mix", "0:20,9:70"], "--priority-mix: the shares of '0:20,9:70' sum to 90 %, not 100"),
    (["--priority-mix", "0:20,x:80"], "--priority-mix: 'x' is not a priority (an integer 0-255, lower first)"),
    (["--priority-mix", "0:20,300:80"], "--priority-mix: priority 300 is outside 0-255"),
    (["--priority-mix", "0:20,9:80", "--priority", "1"], "--priority-mix: cannot be combined with --priority"),
])
def test_a_bad_priority_mix_on_the_command_line_is_one_line_and_exit_2(capsys, argv, words):
    with FakeOpenAI() as fake:
        assert cli.main(["--url", fake.url, "--api-key", KEY, "--max", "1", *argv]) == 2
        assert fake.requests == []  # nothing sent
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"traffic_generator: error: {words}") and len(err.splitlines()) == 1, err


# -- a run ----------------------------------------------------------------------------------------------------

def plan(n, body):
    """Priority 9 waits longer for its first token and every 4th of its requests is refused with 429."""
    if body.get("priority") == 9:
        return {"status": 429} if n % 4 == 3 else {"ttft": 0.03, "tokens": 3}
    return {"ttft": 0.001, "tokens": 3}


def test_a_mix_run_sends_each_drawn_priority_and_reports_each_class_once(tmp_path):
    out, summ = tmp_path / "out.jsonl", tmp_path / "summary.json"
    with FakeOpenAI(plan) as fake:
        result = run(config(fake, priority_mix="0:20,9:80", concurrency=4, output=out, summary_json=summ,
                            max_error_ratio=1.0))
        sent = Counter(body.get("priority") for _, body in fake.requests)
        refused = sum(1 for n, (_, body) in enumerate(fake.requests) if body.get("priority") == 9 and n % 4 == 3)
    assert set(sent) == {0, 9} and sum(sent.values()) == 40  # every request carried a drawn priority
    by_line = Counter(r["priority"] for r in lines(out))
    assert by_line == sent
    doc = json.loads(summ.read_text())
    part = doc["priorities"]
    assert list(part) == ["0", "9"]
    assert [part[k]["requests"]["total"] for k in part] == [sent[0], sent[9]]
    assert part["0"]["share"] == 0.2 and part["9"]["share"] == 0.8 and part["9"]["priority"] == 9
    assert part["0"]["outcomes"]["ok"] == sent[0] and part["0"]["failures"] == {}
    assert part["9"]["outcomes"]["rate_limited"] == refused and part["9"]["outcomes"]["ok"] == sent[9] - refused
    assert sum(p["requests"]["total"] for p in part.values()) == doc["requests"]["total"] == 40
    assert part["9"]["ttft_s"]["p50"] > part["0"]["ttft_s"]["p50"]
    for p in part.values():
        assert {"p50", "p95"} <= set(p["ttft_s"]) and {"p50", "p95"} <= set(p["latency_s"])
    assert result.summary["priorities"] == part
    shown = printed(doc)
    assert "Per priority" in shown and "rate limited" in shown.split("Per priority")[1]


def test_the_same_seed_draws_the_same_priorities_request_by_request(tmp_path):
    def sent_order(seed):
        with FakeOpenAI() as fake:
            run(config(fake, priority_mix="0:30,5:30,9:40", max_requests=30, seed=seed, output=tmp_path / "o.jsonl"))
        return [r["priority"] for r in sorted(lines(tmp_path / "o.jsonl"), key=lambda r: r["id"])]

    assert sent_order(11) == sent_order(11)
    assert sent_order(11) != sent_order(12)


def test_one_priority_is_one_class_and_no_priority_is_none(tmp_path):
    with FakeOpenAI() as fake:
        one = run(config(fake, priority=0, max_requests=3)).summary
        none = run(config(fake, max_requests=3)).summary
    assert list(one["priorities"]) == ["0"] and one["priorities"]["0"]["requests"]["total"] == 3
    assert none["priorities"] == {}
    assert "Per priority" not in printed(one) and "Per priority" not in printed(none)


def test_the_html_report_has_a_row_and_a_chart_per_priority(tmp_path):
    with FakeOpenAI(plan) as fake:
        result = run(config(fake, priority_mix="0:20,9:80", results_dir=tmp_path / "runs", max_error_ratio=1.0))
    page = result.report.read_text()
    assert '<table id="per-priority">' in page and 'data-chart="per-priority"' in page
    part = result.summary["priorities"]
    rows = reportdata.per_priority(result.summary)
    assert [r["priority"] for r in rows] == ["0", "9"]
    assert [r["requests"] for r in rows] == [part["0"]["requests"]["total"], part["9"]["requests"]["total"]]
    assert rows[1]["outcomes"].get("rate_limited") == part["9"]["outcomes"]["rate_limited"]
    html = htmlreport.per_priority_html(rows)
    assert 'data-priority="9"' in html and "rate limited (429)" in html and "TTFT p95" in html


# -- runs kept before the per-priority part ---------------------------------------------------------------------

def test_a_run_kept_before_the_per_priority_part_still_loads_prints_and_draws(tmp_path):
    root = tmp_path / "loadtests"
    old = summary()
    assert "priorities" not in old
    path = write_run(root, "20261201T100000Z-c1", old, records())
    stored = results.load_run(path)
    assert stored.summary["requests"]["total"] == 20
    assert "Per priority" not in printed(stored.summary)
    assert reportdata.per_priority(stored.summary) == []
    page = (path / "report.html").read_text()
    assert "per-priority" not in page and "By model" not in page
    assert cli.main(["--compare", str(path), str(path)]) == 0
