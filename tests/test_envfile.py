"""The per-install .env: mode 0600, a fresh key each install, an existing key kept."""
import stat

import pytest

from llmops import settings
from llmops.errors import ConfigError
from llmops.stack import envfile

TOKEN = "ALERT_RECEIVER_TOKEN=tok-mine\n"  # set, so that the key's tests see only the key's behaviour


def test_created_with_mode_0600_and_a_key(tmp_path):
    env = tmp_path / ".env"
    assert envfile.ensure(env)
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    key = [ln for ln in env.read_text().splitlines() if ln.startswith("LITELLM_MASTER_KEY=")][0].split("=", 1)[1]
    assert key.startswith("sk-") and len(key) >= 3 + 43  # 32 url-safe bytes are 43 characters


def test_two_fresh_setups_get_different_keys(tmp_path):
    a, b = tmp_path / "a.env", tmp_path / "b.env"
    envfile.ensure(a)
    envfile.ensure(b)
    assert a.read_text() != b.read_text()


def test_existing_key_is_kept_and_mode_fixed(tmp_path):
    env = tmp_path / ".env"
    env.write_text("LITELLM_MASTER_KEY=sk-mine\n" + TOKEN)
    env.chmod(0o644)
    assert not envfile.ensure(env)
    assert env.read_text() == "LITELLM_MASTER_KEY=sk-mine\n" + TOKEN
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


def test_empty_key_is_filled(tmp_path):
    env = tmp_path / ".env"
    env.write_text("BIND_HOST=127.0.0.1\nLITELLM_MASTER_KEY=\n")
    assert envfile.ensure(env)
    assert "LITELLM_MASTER_KEY=sk-" in env.read_text() and "BIND_HOST=127.0.0.1" in env.read_text()


def test_env_is_ignored_by_git():
    assert ".env" in (settings.ROOT / ".gitignore").read_text().splitlines()


def test_a_quoted_empty_key_is_filled(tmp_path):
    for line in ('LITELLM_MASTER_KEY=""', "LITELLM_MASTER_KEY=''", "LITELLM_MASTER_KEY = "):
        env = tmp_path / ".env"
        env.write_text(f"BIND_HOST=127.0.0.1\n{line}\n")
        assert envfile.ensure(env)
        assert "LITELLM_MASTER_KEY=sk-" in env.read_text()


def test_a_key_line_with_only_a_comment_is_empty_and_filled_in_place(tmp_path):
    env = tmp_path / ".env"
    env.write_text("BIND_HOST=127.0.0.1\nLITELLM_MASTER_KEY= # x\nPROBE_INTERVAL=5 # seconds\n" + TOKEN)
    assert envfile.ensure(env)
    lines = env.read_text().splitlines()
    assert lines[0] == "BIND_HOST=127.0.0.1" and lines[2] == "PROBE_INTERVAL=5 # seconds"
    assert lines[1].startswith("LITELLM_MASTER_KEY=sk-") and len(lines) == 4


def test_a_key_with_a_comment_after_it_is_kept(tmp_path):
    env = tmp_path / ".env"
    env.write_text("export LITELLM_MASTER_KEY=sk-mine  # mine\n" + TOKEN)
    assert not envfile.ensure(env)
    assert env.read_text() == "export LITELLM_MASTER_KEY=sk-mine  # mine\n" + TOKEN


def test_the_key_file_is_read_by_the_settings_reader(tmp_path):
    """What ensure() calls set is what the settings load: one reader, no pattern of its own."""
    env = tmp_path / ".env"
    for text in ("LITELLM_MASTER_KEY=\"\"\n", "LITELLM_MASTER_KEY=#x\n", "LITELLM_MASTER_KEY=sk-a\nLITELLM_MASTER_KEY=\n"):
        env.write_text(text + TOKEN)
        filled = envfile.ensure(env)
        assert filled == (text != "LITELLM_MASTER_KEY=#x\n")
        key = settings.load(env_file=env, environ={}).litellm_master_key
        assert key == "#x" if not filled else key.startswith("sk-") and key != "sk-a"


def test_a_malformed_line_fails_with_the_file_and_line(tmp_path):
    env = tmp_path / ".env"
    env.write_text("LITELLM_MASTER_KEY=\nnot a setting\n")
    with pytest.raises(ConfigError, match=r"\.env:2: expected KEY=VALUE"):
        envfile.ensure(env)


def test_the_alert_token_is_generated_kept_and_added_to_an_older_env(tmp_path):
    fresh, older = tmp_path / "fresh.env", tmp_path / "older.env"
    envfile.ensure(fresh)
    token = settings.load(env_file=fresh, environ={}).alert_receiver_token
    assert len(token) >= 43 and token != settings.load(env_file=fresh, environ={}).litellm_master_key
    assert not envfile.ensure(fresh) and settings.load(env_file=fresh, environ={}).alert_receiver_token == token
    older.write_text("LITELLM_MASTER_KEY=sk-mine\n")  # an .env from before the alert history
    assert envfile.ensure(older)
    lines = older.read_text().splitlines()
    assert lines[0] == "LITELLM_MASTER_KEY=sk-mine" and lines[1].startswith("ALERT_RECEIVER_TOKEN=") and len(lines) == 2
    assert settings.load(env_file=older, environ={}).alert_receiver_token not in ("", token)
