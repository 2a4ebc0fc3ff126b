"""The command line: one-line usage errors, documented exit codes, summary output, Ctrl-C."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmops.traffic import cli
from tests.support import makefile
from tests.support.fakes.traffic import KEY, FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "traffic_generator.py"


def main(*argv):
    try:
        return cli.main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        return exc.code


@pytest.mark.parametrize("argv, words", [
    (["--concurrency", "0"], "--concurrency: must be >= 1"),
    (["--rate", "-1"], "--rate: must be > 0"),
    (["--rate", "fast"], "'fast' is not a number"),
    (["--max", "abc"], "'abc' is not an integer"),
    (["--duration", "soon"], "'soon' is not a duration"),
    (["--arrivals", "poisson"], "--arrivals: needs --rate"),
    (["--arrivals", "gamma"], "invalid choice"),
    (["--rate", "2", "--delay", "1"], "--delay: is for closed-loop runs"),
    (["--sweep", "4,2", "--duration", "5"], "--sweep: needs rising levels"),
    (["--sweep", "1,2", "--concurrency", "4"], "--sweep: sets the concurrency levels itself"),
    (["--sweep", "1,2", "--max", "3", "--rate", "1"], "cannot be combined"),
    (["--burst", "8"], "is not SIZE@SECONDS"),
    (["--max-error-ratio", "2"], "--max-error-ratio: must be within 0-1"),
    (["--temperature", "9"], "--temperature: must be within 0-2"),
    (["--priority", "256"], "--priority: must be within 0-255"),
    (["--priority", "-1"], "--priority: must be within 0-255"),
    (["--url", "localhost:8000"], "--url: 'localhost:8000' is not a URL"),
    (["--category", "poetry", "--url", "http://127.0.0.1:9"], "unknown prompt category 'poetry'"),
    (["--prompts", "/nonexistent/bank.json", "--url", "http://127.0.0.1:9"], "no such prompt file"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_bad_flags_give_one_line_and_exit_2(capsys, argv, words):
    assert main(*argv, "--api-key", "x") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("traffic_generator: error: ") and words in err


def test_help_documents_every_exit_code(capsys):
    assert main("--help") == 0
    out = capsys.readouterr().out
    for code in ("0 ", "1 ", "2 ", "3 ", "130"):
        assert f"\n  {code}" in out
    assert "--max-error-ratio (default 0.05)" in out


def test_unreachable_proxy_exits_3_with_one_line(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main("--url", f"http://127.0.0.1:{port}", "--api-key", KEY, "--max", "1") == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "proxy unreachable" in err


@pytest.mark.parametrize("flags, words", [
    (["--api-key", "sk-wrong"], "rejected the API key"),
    (["--api-key", KEY, "--model", "gpt-9"], "unknown to the proxy"),
])
def test_key_and_model_problems_exit_3(capsys, flags, words):
    with FakeOpenAI() as fake:
        assert main("--url", fake.url, "--max", "1", *flags) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


def test_a_good_run_prints_the_summary_and_exits_0(capsys, tmp_path):
    with FakeOpenAI([{"tokens": 3}]) as fake:
        code = main("--url", fake.url, "--api-key", KEY, "--max", "4", "--summary-json", str(tmp_path / "s.json"),
                    "--slo-ttft", "500ms", "--no-progress")
    out, err = capsys.readouterr()
    assert code == 0
    assert "Traffic summary" in out and "time to first token" in out and "goodput" in out
    assert "ok: 4/4 requests succeeded" in err
    assert json.loads((tmp_path / "s.json").read_text())["exit_code"] == 0


def test_error_ratio_over_the_limit_exits_1(capsys):
    with FakeOpenAI([{"status": 503}, {}]) as fake:
        assert main("--url", fake.url, "--api-key", KEY, "--max", "4", "--max-error-ratio", "0.4") == 1
    assert "above --max-error-ratio" in capsys.readouterr().err


def test_sweep_prints_where_throughput_stops(capsys):
    with FakeOpenAI([{"ttft": 0.01}]) as fake:
        assert main("--url", fake.url, "--api-key", KEY, "--sweep", "1,2", "--max", "4") == 0
    out = capsys.readouterr().out
    assert "Concurrency sweep" in out and "throughput" in out


def test_ctrl_c_stops_cleanly_counts_everything_and_exits_130(tmp_path):
    out = tmp_path / "out.jsonl"
    # The first 3 requests finish; every later one hangs until the client gives up.
    with FakeOpenAI(lambda n, body: {} if n < 3 else {"hang": True}) as fake:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--url", fake.url, "--api-key", KEY, "--concurrency", "4",
             "--output", str(out), "--no-progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 20
            while len(fake.requests) < 7 and time.monotonic() < deadline:  # 3 done + 4 hanging
                time.sleep(0.02)
            assert len(fake.requests) == 7
            os.kill(proc.pid, signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        received = len(fake.requests)
    assert proc.returncode == 130, stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == received == 7
    assert sorted(r["status"] for r in records) == ["cancelled"] * 4 + ["ok"] * 3
    # The four the generator cancelled are reported beside the counts, not in them.
    assert "cancelled by the interrupt (not counted)" in stdout
    assert "interrupted: 3 requests counted, 4 cancelled in flight (not counted)" in stderr


@pytest.mark.parametrize("preset", sorted(cli.PRESETS))
def test_each_preset_is_a_valid_run_and_the_make_target_that_names_it(preset):
    config = cli.to_config(cli.build_parser().parse_args(cli.with_preset(["--preset", preset, "--api-key", "x"])))
    assert config.max_requests == (5 if preset == "quick" else None)
    assert config.duration == {"quick": None, "steady": 180.0, "sweep": 20.0, "capacity": 20.0}[preset]
    assert config.sweep == ((1, 2, 4, 8, 16) if preset == "sweep" else ())
    assert config.capacity == (preset == "capacity")
    target = {"quick": "traffic-quick", "steady": "traffic", "sweep": "load-test", "capacity": "capacity"}[preset]
    assert makefile.recipe(target).splitlines()[-1].startswith(f".venv/bin/python -m llmops traffic --preset {preset}")


def test_flags_after_a_preset_override_it():
    argv = cli.with_preset(["--preset=quick", "--max", "2", "--max-tokens", "8"])
    args = cli.build_parser().parse_args(argv)
    assert (args.max_requests, args.max_tokens, args.concurrency, args.preset) == (2, 8, 1, "quick")
    assert cli.with_preset(["--max", "2"]) == ["--max", "2"]


def test_an_unknown_preset_gives_one_line_naming_the_presets_and_exits_2(capsys):
    assert main("--preset", "fast", "--api-key", "x") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--preset: invalid choice: 'fast'" in err and "'steady'" in err


def test_a_preset_run_through_llmops_traffic_sends_its_requests(capsys, tmp_path):
    from llmops import cli as llmops_cli

    with FakeOpenAI([{"tokens": 3}]) as fake:
        code = llmops_cli.main(["traffic", "--preset", "quick", "--url", fake.url, "--api-key", KEY, "--no-progress",
                                "--summary-json", str(tmp_path / "s.json"), "--results-dir", str(tmp_path / "runs")])
    assert code == 0 and "ok: 5/5 requests succeeded" in capsys.readouterr().err
    assert len(fake.requests) == 5
    assert {body["max_tokens"] for _, body in fake.requests} == {32}
    # The kept run says what ran: the preset's own flags, then what was given.
    (run_json,) = (tmp_path / "runs").glob("*/run.json")
    command = json.loads(run_json.read_text())["command"]
    assert command[1:7] == list(cli.PRESETS["quick"]) and command[7:9] == ["--preset", "quick"]
