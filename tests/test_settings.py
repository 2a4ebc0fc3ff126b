"""Settings: environment over .env over defaults; malformed input names the key, file and line."""
import json

import pytest

from llmops import settings
from llmops.errors import ConfigError


def test_defaults_when_nothing_is_set(tmp_path):
    s = settings.load(env_file=tmp_path / "missing.env", environ={})
    assert s.litellm_port == 8000 and s.bind_host == "127.0.0.1"
    assert s.backend_urls == ["http://127.0.0.1:11434"]


def test_environment_wins_over_env_file(tmp_path):
    env = tmp_path / ".env"
    env.write_text("LITELLM_PORT=8100\nDASHBOARD_PORT=3100\n")
    s = settings.load(env_file=env, environ={"LITELLM_PORT": "8200"})
    assert s.litellm_port == 8200 and s.dashboard_port == 3100


def test_empty_environment_value_counts_as_unset(tmp_path):
    s = settings.load(env_file=tmp_path / "x", environ={"BACKENDS": ""})
    assert s.backends == 1


def test_unknown_key_names_file_and_line(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# comment\nLITELLM_PORT=8000\nLITELM_PORT=8001\n")
    with pytest.raises(ConfigError, match=r"\.env:3: unknown setting 'LITELM_PORT'"):
        settings.load(env_file=env, environ={})


def test_malformed_line_names_file_and_line(tmp_path):
    env = tmp_path / ".env"
    env.write_text("LITELLM_PORT=8000\nthis is not a setting\n")
    with pytest.raises(ConfigError, match=r"\.env:2: expected KEY=VALUE"):
        settings.load(env_file=env, environ={})


def test_bad_port_value_names_the_key(tmp_path):
    env = tmp_path / ".env"
    env.write_text("\n\nPROMETHEUS_PORT=99999\n")
    with pytest.raises(ConfigError, match=r"\.env:3: bad value for PROMETHEUS_PORT"):
        settings.load(env_file=env, environ={})


def test_backends_count_gives_consecutive_ports(tmp_path):
    s = settings.load(env_file=tmp_path / "x", environ={"BACKENDS": "3", "OLLAMA_PORT": "21000"})
    assert s.backend_urls == ["http://127.0.0.1:21000", "http://127.0.0.1:21001", "http://127.0.0.1:21002"]


def test_ollama_hosts_list_is_parsed_and_checked(tmp_path):
    s = settings.load(env_file=tmp_path / "x", environ={"OLLAMA_HOSTS": "http://10.0.0.2:11434/, http://h:1"})
    assert s.backend_urls == ["http://10.0.0.2:11434", "http://h:1"]
    with pytest.raises(ConfigError, match="OLLAMA_HOSTS"):
        settings.load(env_file=tmp_path / "x", environ={"OLLAMA_HOSTS": "ftp://nope"})


def test_every_setting_is_in_env_example_and_readme():
    example = (settings.ROOT / ".env.example").read_text()
    readme = (settings.ROOT / "README.md").read_text()
    internal = {"LLMOPS_STATE_DIR", "LLMOPS_LOG_DIR", "LLMOPS_LOADTEST_DIR", "PROMETHEUS_DATA_DIR"}
    for setting in settings.SETTINGS:
        assert f"`{setting.name}`" in readme, f"{setting.name} is not documented in README.md"
        if setting.name not in internal:
            assert f"{setting.name}=" in example, f"{setting.name} is missing from .env.example"


def test_ipv6_bind_host_is_refused_with_a_clear_message(tmp_path):
    env = tmp_path / ".env"
    env.write_text("BIND_HOST=::1\n")
    with pytest.raises(ConfigError, match=r"\.env:1: bad value for BIND_HOST.*IPv6 addresses are not supported"):
        settings.load(env_file=env, environ={})
    assert settings.load(env_file=tmp_path / "x", environ={"BIND_HOST": "0.0.0.0"}).litellm_url == \
        "http://127.0.0.1:8000"


def test_changed_settings_compare_with_the_started_snapshot_without_secrets(tmp_path):
    from llmops.stack import Stack

    environ = {"LLMOPS_STATE_DIR": str(tmp_path / "state"), "LITELLM_MASTER_KEY": "sk-secret-one",
               "OLLAMA_HOSTS": "http://user:pw@10.0.0.2:11434"}
    started = Stack(settings.load(env_file=tmp_path / "x", environ=environ))
    started.settings.state_dir.mkdir(parents=True)
    assert started.changed_settings() == []  # no snapshot: nothing to compare with
    started.settings_file.write_text(json.dumps(started.settings_snapshot()))
    text = started.settings_file.read_text()
    assert "sk-secret-one" not in text and "user:pw" not in text
    assert started.changed_settings() == []
    now = Stack(settings.load(env_file=tmp_path / "x", environ={
        **environ, "LITELLM_MASTER_KEY": "sk-secret-two", "LITELLM_TIMEOUT": "60",
        "OLLAMA_HOSTS": "http://user:other@10.0.0.2:11434"}))
    changed = now.changed_settings()
    assert changed[0] == "LITELLM_MASTER_KEY" and "LITELLM_TIMEOUT (unset) -> 60.0" in changed
    assert any(c.startswith("OLLAMA_HOSTS http://sha256:") for c in changed)
    assert not any("secret" in c or "other" in c or "pw" in c for c in changed)
    old = {k: v for k, v in started.settings_snapshot().items() if k != "NODE_EXPORTER_PORT"}
    started.settings_file.write_text(json.dumps(old))  # an older snapshot without a newer setting
    assert "NODE_EXPORTER_PORT (unset) -> 9100" in started.changed_settings()
    started.settings_file.write_text("[1, 2]")
    assert started.changed_settings() == []


def _load_env(tmp_path, text: str) -> settings.Settings:
    env = tmp_path / ".env"
    env.write_text(text)
    return settings.load(env_file=env, environ={})


def test_an_inline_comment_after_an_unquoted_value_is_not_part_of_it(tmp_path):
    s = _load_env(tmp_path, "PROBE_INTERVAL=5 # seconds\nCANARY_INTERVAL=30\t# tab before it\n"
                            "MODEL_TAG=a#b\nLITELLM_MASTER_KEY= # no key yet\n")
    assert s.probe_interval == 5.0 and s.canary_interval == 30.0
    assert s.model_tag == "a#b"  # a `#` without whitespace before it is part of the value, as in python-dotenv
    assert s.litellm_master_key == ""


def test_quotes_and_export_keep_working_with_a_comment_after_them(tmp_path):
    s = _load_env(tmp_path, 'export MODEL_TAG="tag # inside" # after\nLITELLM_MASTER_KEY=\'sk-q\'\nexport PROBE_INTERVAL=7\n')
    assert s.model_tag == "tag # inside" and s.litellm_master_key == "sk-q" and s.probe_interval == 7.0


def test_a_bad_value_before_a_comment_still_names_the_file_and_line(tmp_path):
    with pytest.raises(ConfigError, match=r"\.env:2: bad value for PROBE_INTERVAL: could not convert string to float: 'abc'"):
        _load_env(tmp_path, "BIND_HOST=127.0.0.1\nPROBE_INTERVAL=abc # seconds\n")
    with pytest.raises(ConfigError, match=r"\.env:1: bad value for PROBE_INTERVAL"):
        _load_env(tmp_path, "PROBE_INTERVAL=abc\n")


def test_the_env_example_loads_with_its_comments(tmp_path):
    s = settings.load(env_file=settings.ROOT / ".env.example", environ={})
    assert "#" in (settings.ROOT / ".env.example").read_text().split("PROBE_INTERVAL=", 1)[1].splitlines()[0]
    assert s.probe_interval == 5.0 and s.canary_interval == 60.0


@pytest.mark.parametrize(("line", "key"), [
    ("QUEUE_DEFAULT_PRIORITY=256", "QUEUE_DEFAULT_PRIORITY"), ("QUEUE_DEFAULT_PRIORITY=-1", "QUEUE_DEFAULT_PRIORITY"),
    ("QUEUE_TIMEOUT=0", "QUEUE_TIMEOUT"), ("QUEUE_AGEING=0", "QUEUE_AGEING"), ("QUEUE_MAX=0", "QUEUE_MAX"),
    ("QUEUE_ENABLED=maybe", "QUEUE_ENABLED"), ("OLLAMA_NUM_PARALLEL=0", "OLLAMA_NUM_PARALLEL"),
    ("REDIS_URL=http://127.0.0.1:6379", "REDIS_URL"), ("REDIS_URL=redis://:s3cret@", "REDIS_URL"),
])
def test_a_bad_queue_setting_names_the_key_and_not_a_secret(tmp_path, line, key):
    env = tmp_path / ".env"
    env.write_text(line + "\n")
    with pytest.raises(ConfigError, match=rf"\.env:1: bad value for {key}") as info:
        settings.load(env_file=env, environ={})
    assert "s3cret" not in str(info.value)


def test_a_redis_url_with_a_password_is_taken(tmp_path):
    s = settings.load(env_file=tmp_path / "x", environ={"REDIS_URL": "redis://:pw@127.0.0.1:6390/2"})
    assert s.redis_url == "redis://:pw@127.0.0.1:6390/2"
