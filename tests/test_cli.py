"""`python -m llmops`: argparse subcommands, each dispatched to its handler (no stack started)."""
from __future__ import annotations

import pytest

from llmops import cli


@pytest.fixture
def env(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("LITELLM_MASTER_KEY=sk-cli-test\n")
    monkeypatch.setenv("LLMOPS_ENV_FILE", str(env_file))
    monkeypatch.setenv("LLMOPS_STATE_DIR", str(tmp_path / "state"))
    return env_file


def test_every_makefile_command_is_a_subcommand_with_a_handler():
    sub = next(a for a in cli.parser()._actions if a.dest == "command")
    stack = {"setup", "start", "stop", "restart", "status", "health", "logs", "show-key"}
    parts = {command for command, _ in cli.PARTS}
    assert set(sub.choices) == stack | parts == stack | {"traffic", "backend", "dashboard", "requests", "proxy", "alerts",
                                                            "settings", "gpu"}
    assert all(callable(sub.choices[name].get_default("func")) for name in stack)
    assert all(callable(handler) for handler, _ in cli.PARTS.values())


def test_a_part_command_gets_the_rest_of_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list: [\n")
    assert cli.main(["proxy", "check", str(bad)]) == 2
    assert f"{bad}:" in capsys.readouterr().err
    assert cli.main(["proxy", "check"]) == 0 and "litellm_config.yaml: ok" in capsys.readouterr().out


def test_a_part_command_without_its_subcommand_says_which_there_are(capsys):
    assert cli.main(["proxy"]) == 2
    assert "usage: llmops proxy {check,launch}" in capsys.readouterr().err


def test_show_key_prints_the_key_from_the_env_file(env, capsys):
    assert cli.main(["show-key"]) == 0
    assert capsys.readouterr().out.strip() == "sk-cli-test"


def test_an_unknown_service_is_refused_with_the_known_ones(env, capsys):
    assert cli.main(["health", "nosuch"]) == 2
    assert "unknown service 'nosuch'" in capsys.readouterr().err


def test_an_unknown_command_is_a_usage_error(env, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bogus"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_a_bad_setting_is_an_error_line_not_a_traceback(env, capsys):
    env.write_text("LITELLM_MASTER_KEY=sk-cli-test\nDASHBOARD_PORT=0\n")
    assert cli.main(["show-key"]) == 1
    assert "bad value for DASHBOARD_PORT" in capsys.readouterr().err


def test_settings_table_write_rewrites_a_stale_table_and_refuses_a_file_without_one(tmp_path, capsys):
    from llmops import settings

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{settings.TABLE_BEGIN}\n| stale |\n{settings.TABLE_END}\n\nmore\n")
    assert cli.main(["settings", "table", "--write", str(readme)]) == 0
    assert "rewritten" in capsys.readouterr().out
    assert readme.read_text() == f"# x\n\n{settings.TABLE_BEGIN}\n{settings.markdown_table()}\n{settings.TABLE_END}\n\nmore\n"
    assert cli.main(["settings", "table", "--write", str(readme)]) == 0
    assert "already current" in capsys.readouterr().out
    assert cli.main(["settings", "table"]) == 0 and "| `BIND_HOST` | `127.0.0.1` |" in capsys.readouterr().out
    (tmp_path / "plain.md").write_text("# no table\n")
    assert cli.main(["settings", "table", "--write", str(tmp_path / "plain.md")]) == 2
    assert "has no settings table" in capsys.readouterr().err
    assert (tmp_path / "plain.md").read_text() == "# no table\n"
