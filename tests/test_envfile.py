"""The per-install .env: mode 0600, a fresh key each install, an existing key kept."""
import stat

from llmops.stack import envfile


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
    env.write_text("LITELLM_MASTER_KEY=sk-mine\n")
    env.chmod(0o644)
    assert not envfile.ensure(env)
    assert env.read_text() == "LITELLM_MASTER_KEY=sk-mine\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


def test_empty_key_is_filled(tmp_path):
    env = tmp_path / ".env"
    env.write_text("BIND_HOST=127.0.0.1\nLITELLM_MASTER_KEY=\n")
    assert envfile.ensure(env)
    assert "LITELLM_MASTER_KEY=sk-" in env.read_text() and "BIND_HOST=127.0.0.1" in env.read_text()


def test_env_is_ignored_by_git():
    from llmops.settings import ROOT

    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_a_quoted_empty_key_is_filled(tmp_path):
    for line in ('LITELLM_MASTER_KEY=""', "LITELLM_MASTER_KEY=''", "LITELLM_MASTER_KEY = "):
        env = tmp_path / ".env"
        env.write_text(f"BIND_HOST=127.0.0.1\n{line}\n")
        assert envfile.ensure(env)
        assert "LITELLM_MASTER_KEY=sk-" in env.read_text()
