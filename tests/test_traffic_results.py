"""Kept runs: every CLI run leaves logs/loadtests/<time>-<name>/ with its lines, summary and run.json; no key."""
import json
import os
from pathlib import Path

import pytest
from aiohttp import web

from llmops.traffic import cli, results
from llmops.traffic.results import folder, writer
from tests.support.fakes.traffic import KEY, FakeOpenAI
from tests.support.loadtest_runs import records, summary, write_run


def main(*argv):
    try:
        return cli.main(list(argv))
    except SystemExit as exc:
        return exc.code


def only_run(root: Path) -> Path:
    runs = [p for p in root.iterdir() if results.RUN_NAME.match(p.name)]
    assert len(runs) == 1, runs
    return runs[0]


class FakeStack(FakeOpenAI):
    """The fake proxy, also answering LiteLLM's readiness and an Ollama backend's version and tags."""

    def app(self) -> web.Application:
        app = super().app()

        async def readiness(request):
            return web.json_response({"status": "healthy", "db": "Not connected", "litellm_version": "1.108.7"})

        async def version(request):
            # A backend must never receive the proxy's key.
            assert "Authorization" not in request.headers
            return web.json_response({"version": "0.9.9-fake"})

        async def tags(request):
            return web.json_response({"models": [{"name": "smollm2:135m", "digest": "abc123", "size": 98362432,
                                                  "details": {"parameter_size": "135M", "quantization_level": "Q4_1"}}]})
        app.router.add_get("/health/readiness", readiness)
        app.router.add_get("/api/version", version)
        app.router.add_get("/api/tags", tags)
        return app


def test_a_run_keeps_lines_summary_and_run_json_and_output_flags_still_work(tmp_path, capsys):
    out, summ, root = tmp_path / "own.jsonl", tmp_path / "own-summary.json", tmp_path / "kept"
    with FakeOpenAI([{"tokens": 3}, {"status": 503}]) as fake:
        code = main("--url", fake.url, "--api-key", KEY, "--max", "6", "--concurrency", "2", "--no-progress",
                    "--max-error-ratio", "0.6", "--output", str(out), "--summary-json", str(summ),
                    "--results-dir", str(root), "--name", "my test/run")
    assert code == 0
    run_dir = only_run(root)
    assert run_dir.name.endswith("-my-test-run")
    assert sorted(p.name for p in run_dir.iterdir()) == ["report.html", "requests.jsonl", "run.json", "summary.json"]
    # --output and --summary-json are written as before, with the same content as the kept copies.
    assert (run_dir / "requests.jsonl").read_bytes() == out.read_bytes()
    assert len(out.read_text().splitlines()) == 6
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads(summ.read_text())
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "finished" and run["exit_code"] == 0 and run["kind"] == "closed loop"
    assert run["settings"]["max_requests"] == 6 and run["settings"]["concurrency"] == 2
    assert run["command"][:2] == ["scripts/traffic_generator.py", "--url"] and "--max-error-ratio" in run["command"]
    # The fake answers no readiness or version: the stack's versions are "unknown", not guessed.
    assert run["stack"]["proxy"]["version"] == "unknown" and run["stack"]["proxy"]["models"] == ["fake-model"]
    assert run["stack"]["backends"][0]["version"] == "unknown"
    # make load-test relies on the last line being the report's path.
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("report: ") and Path(last[len("report: "):]).resolve() == run_dir / "report.html"


@pytest.mark.parametrize("key_flag", [["--api-key", KEY], [f"--api-key={KEY}"]])
def test_the_key_is_in_no_kept_file(tmp_path, key_flag):
    root = tmp_path / "kept"
    with FakeOpenAI([{"tokens": 2}]) as fake:
        assert main("--url", fake.url, *key_flag, "--max", "2", "--no-progress", "--results-dir", str(root)) == 0
    run_dir = only_run(root)
    for f in run_dir.iterdir():
        assert KEY not in f.read_text(), f.name
    run = json.loads((run_dir / "run.json").read_text())
    assert "[redacted]" in " ".join(run["command"]) and run["settings"]["api_key"] == "[redacted]"


def test_key_from_the_environment_is_not_kept_either(tmp_path, monkeypatch):
    root = tmp_path / "kept"
    env = tmp_path / ".env"
    env.write_text(f"LITELLM_MASTER_KEY={KEY}\n")
    env.chmod(0o600)
    monkeypatch.setenv("LLMOPS_ENV_FILE", str(env))
    with FakeOpenAI([{"tokens": 2}]) as fake:
        assert main("--url", fake.url, "--max", "2", "--no-progress", "--results-dir", str(root)) == 0
    for f in only_run(root).iterdir():
        assert KEY not in f.read_text(), f.name


def test_run_json_names_the_stacks_versions_when_it_answers(tmp_path, monkeypatch):
    root = tmp_path / "kept"
    with FakeStack([{"tokens": 2}]) as fake:
        monkeypatch.setattr(writer, "backend_urls_for", lambda url: [fake.url])
        assert main("--url", fake.url, "--api-key", KEY, "--max", "1", "--no-progress", "--results-dir", str(root)) == 0
    stack = json.loads((only_run(root) / "run.json").read_text())["stack"]
    assert stack["proxy"]["software"] == "litellm" and stack["proxy"]["version"] == "1.108.7"
    assert stack["backends"][0]["version"] == "0.9.9-fake"
    assert stack["backends"][0]["models"][0] == {"name": "smollm2:135m", "digest": "abc123", "size": 98362432,
                                                  "parameter_size": "135M", "quantization_level": "Q4_1"}


def test_backends_are_asked_only_when_the_run_targets_this_stacks_proxy(monkeypatch, tmp_path):
    env = tmp_path / ".env"
    env.write_text("LITELLM_PORT=18555\nOLLAMA_PORT=18556\n")
    monkeypatch.setenv("LLMOPS_ENV_FILE", str(env))
    assert writer.backend_urls_for("http://localhost:18555/") == ["http://127.0.0.1:18556"]
    assert writer.backend_urls_for("http://127.0.0.1:9999") == []


def test_a_refused_run_leaves_no_folder(tmp_path):
    root = tmp_path / "kept"
    with FakeOpenAI() as fake:
        assert main("--url", fake.url, "--api-key", "sk-wrong", "--max", "1", "--results-dir", str(root)) == 3
    assert not root.exists() or list(root.iterdir()) == []


def test_folder_names_are_unique_within_a_second(tmp_path):
    from datetime import UTC, datetime

    now = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    a, b = folder.create_dir(tmp_path, "x", now), folder.create_dir(tmp_path, "x", now)
    assert (a.name, b.name) == ("20261201T100000Z-x", "20261201T100000Z-x-2")
    assert folder.create_dir(tmp_path, "../../etc", now).parent == tmp_path


def test_half_written_and_corrupt_folders_read_as_incomplete(tmp_path):
    crashed = write_run(tmp_path, "20261201T100000Z-crashed", lines=records(3))
    bad = write_run(tmp_path, "20261201T100100Z-bad", summary_doc=None)
    (bad / "summary.json").write_text('{"requests": {"total": 3, "ok"')  # cut mid-write
    wrong = write_run(tmp_path, "20261201T100200Z-wrong", summary_doc=None)
    (wrong / "summary.json").write_text('["not", "a", "summary"]')
    empty = tmp_path / "20261201T100300Z-empty"
    empty.mkdir()
    good = write_run(tmp_path, "20261201T100400Z-good", summary(), records())
    (tmp_path / "comparisons").mkdir()  # not a run: not listed
    listed = {r.name: r for r in results.list_runs(tmp_path)}
    assert list(listed) == [good.name, empty.name, wrong.name, bad.name, crashed.name]  # newest first
    assert listed[good.name].status == "complete"
    for name in (crashed.name, bad.name, wrong.name, empty.name):
        assert listed[name].status == "incomplete" and listed[name].reason, name
    assert "crashed or is still running" in listed[crashed.name].reason
    assert "unreadable" in listed[bad.name].reason


def test_a_crash_cut_last_line_is_skipped_and_counted(tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text(json.dumps(records(1)[0]) + "\n" + '{"id": 2, "status": "o')
    lines, bad = results.read_records(path)
    assert len(lines) == 1 and bad == 1


def test_argv_redaction():
    assert folder.redact_argv(["--api-key", "sk-1", "--url", "http://x"], ("sk-1",)) == \
        ["--api-key", "[redacted]", "--url", "http://x"]
    assert folder.redact_argv(["--api-key=sk-1", "--name", "run-sk-1"], ("sk-1",)) == \
        ["--api-key=[redacted]", "--name", "run-[redacted]"]


def test_the_default_folder_is_the_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMOPS_LOADTEST_DIR", str(tmp_path / "elsewhere"))
    assert results.default_dir() == (tmp_path / "elsewhere").resolve()
    monkeypatch.delenv("LLMOPS_LOADTEST_DIR")
    monkeypatch.setenv("LLMOPS_ENV_FILE", os.devnull)
    assert results.default_dir() == (Path(results.__file__).parents[3] / "logs" / "loadtests").resolve()


def test_an_unusable_results_folder_is_one_line_and_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with FakeOpenAI([{"tokens": 2}]) as fake:
        code = main("--url", fake.url, "--api-key", KEY, "--max", "1", "--no-progress", "--results-dir", str(blocker))
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--results-dir: cannot create a run folder in" in err


def test_a_report_that_cannot_be_drawn_keeps_the_results_and_the_exit_code(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("drawing failed")
    monkeypatch.setattr(writer.htmlreport, "render_run", broken)
    root = tmp_path / "kept"
    with FakeOpenAI([{"tokens": 2}]) as fake:
        assert main("--url", fake.url, "--api-key", KEY, "--max", "2", "--no-progress", "--results-dir", str(root)) == 0
    run_dir = only_run(root)
    assert (run_dir / "summary.json").exists() and not (run_dir / "report.html").exists()
    assert "report not drawn (ValueError: drawing failed)" in capsys.readouterr().err
    assert results.load_run(run_dir).status == "complete"
