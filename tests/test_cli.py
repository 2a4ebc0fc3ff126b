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
    assert set(sub.choices) == {"setup", "start", "stop", "restart", "status", "health", "logs", "show-key"}
    assert all(callable(p.get_default("func")) for p in sub.choices.values())


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
