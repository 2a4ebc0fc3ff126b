"""Typed settings: each row's parser gives the value its type once; a 0 that is not allowed is refused."""
from __future__ import annotations

import types
import typing

import pytest

from llmops import settings
from llmops.errors import ConfigError


def _is(value, kind) -> bool:
    if isinstance(kind, types.UnionType):
        return any(_is(value, k) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    origin = typing.get_origin(kind)
    if origin is list:
        return isinstance(value, list) and all(isinstance(v, typing.get_args(kind)[0]) for v in value)
    return isinstance(value, kind)


def test_every_value_has_its_rows_type(tmp_path):
    environ = {"OLLAMA_HOSTS": "http://10.0.0.2:11434", "BACKEND_THREADS": "2", "LITELLM_TIMEOUT": "30"}
    loaded = settings.load(env_file=tmp_path / "x", environ=environ)
    wrong = {s.name: (loaded.values[s.name], s.type) for s in settings.SETTINGS
             if not _is(loaded.values[s.name], s.type)}
    assert wrong == {}
    assert loaded.litellm_port == 8000 and loaded.probe_interval == 5.0 and loaded.litellm_timeout == 30.0


@pytest.mark.parametrize("key", ["PROBE_INTERVAL", "BACKENDS", "LITELLM_WORKERS", "BACKEND_NUM_CTX"])
def test_a_zero_that_is_not_allowed_is_refused_with_file_line_and_key(tmp_path, key):
    env = tmp_path / ".env"
    env.write_text(f"LITELLM_MASTER_KEY=sk-x\n{key}=0\n")
    with pytest.raises(ConfigError, match=rf"\.env:2: bad value for {key}: 0"):
        settings.load(env_file=env, environ={})


def test_a_zero_canary_interval_turns_the_canary_off_and_is_allowed(tmp_path):
    assert settings.load(env_file=tmp_path / "x", environ={"CANARY_INTERVAL": "0"}).canary_interval == 0.0


def test_path_settings_resolve_against_the_project_root(tmp_path):
    loaded = settings.load(env_file=tmp_path / "x", environ={"LLMOPS_STATE_DIR": ".run-x"})
    assert loaded.state_dir == (settings.ROOT / ".run-x").resolve()
    assert loaded.path("LITELLM_CONFIG") == (settings.ROOT / "litellm_config.yaml").resolve()


@pytest.mark.parametrize("parser", ["_non_negative_int", "_non_negative_float"])
def test_the_non_negative_parsers_accept_zero_and_refuse_below_it(parser):
    parse = getattr(settings, parser)
    assert parse("0") == 0
    with pytest.raises(ValueError, match=r"^-1(\.0)? is negative$"):
        parse("-1")
