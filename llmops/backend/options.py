"""Ollama's generation options: parsing, defaults and checks."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields

from .. import durations

log = logging.getLogger(__name__)


class BadRequest(ValueError):
    """A request the backend answers with 400 and {"error": message}."""


@dataclass
class GenOptions:
    """Sampling and length options; defaults are Ollama's."""

    num_predict: int = -1
    temperature: float = 0.8
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_penalty: float = 1.1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = -1
    num_ctx: int = 0
    stop: list[str] = field(default_factory=list)
    # GBNF text that constrains decoding (from `format` / `response_format`, or a request's tools); not an
    # Ollama option. A sampler honours it with grammar_sampler.grammar_sampler(vocab, opts).
    grammar: str = ""
    # With triggers the grammar is lazy: decoding is free until the output contains one of these strings,
    # and from the trigger's first character on the grammar holds (llama.cpp's lazy grammar, as its server
    # does for tool calls). Empty: the grammar holds from the first token.
    grammar_triggers: list[str] = field(default_factory=list)
    # The answer must hold visible text: end-of-generation tokens are masked out until a token with
    # visible text is sampled (a tool chat's text answer is never empty). Not an Ollama option.
    text_required: bool = False


_INT = {"num_predict", "top_k", "seed", "num_ctx"}
_FLOAT = {f.name for f in fields(GenOptions)} - _INT - {"stop", "grammar", "grammar_triggers", "text_required"}
# Ollama's options that change nothing here (one CPU context, no GPU): ignored with one log line.
_IGNORED = {
    "num_keep", "repeat_last_n", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread",
    "penalize_newline", "low_vram", "f16_kv", "vocab_only", "use_mlock", "numa", "tfs_z",
    "mirostat", "mirostat_tau", "mirostat_eta",
}


def parse_options(raw: object) -> GenOptions:
    """Turn a request's "options" object into GenOptions; wrong types raise BadRequest."""
    opts = GenOptions()
    if raw is None:
        return opts
    if not isinstance(raw, dict):
        raise BadRequest("options must be an object")
    for key, value in raw.items():
        if value is None:
            continue
        if key in _IGNORED or key not in _INT | _FLOAT | {"stop"}:
            _log_ignored(key)
            continue
        if key in _INT:
            # JSON has one number type; 40.0 is fine, 40.5 and true are not.
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
                raise BadRequest(f"option {key!r} must be of type integer")
            setattr(opts, key, int(value))
        elif key in _FLOAT:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BadRequest(f"option {key!r} must be of type number")
            setattr(opts, key, float(value))
        elif key == "stop":
            opts.stop = parse_stop(value)
    if opts.temperature < 0:
        raise BadRequest("option 'temperature' must not be negative")
    return opts


def parse_stop(value: object) -> list[str]:
    """A stop string or list of them; empty strings are dropped."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise BadRequest("option 'stop' must be a string or a list of strings")
    return [s for s in value if s]


def context_window(opts: GenOptions, loaded_ctx: int) -> int:
    """The window a request may use: its num_ctx, capped at the loaded context."""
    # The context is allocated once at load; a bigger num_ctx would mean reloading per request.
    if opts.num_ctx > 0:
        return max(16, min(opts.num_ctx, loaded_ctx))
    return loaded_ctx


def fit_prompt(tokens: list[int], n_ctx: int, num_predict: int) -> list[int]:
    """Drop the oldest prompt tokens so that the prompt leaves room to generate."""
    room = num_predict if 0 < num_predict <= n_ctx // 2 else max(1, n_ctx // 4)
    keep = n_ctx - room
    return tokens if len(tokens) <= keep else tokens[-keep:]


def output_limit(opts: GenOptions, prompt_len: int, n_ctx: int) -> int:
    """How many tokens may be generated: num_predict (<= 0 means until the window is full)."""
    window_left = max(0, n_ctx - prompt_len)
    return min(opts.num_predict, window_left) if opts.num_predict > 0 else window_left


_logged: set[str] = set()


def _log_ignored(key: str) -> None:
    """One log line per option name, as Ollama warns "invalid option provided" and goes on."""
    if key not in _logged:
        _logged.add(key)
        known = "has no effect in the embedded backend" if key in _IGNORED else "is not an option"
        log.warning("ignoring option %r: it %s", key, known)


def parse_keep_alive(value: object, default: float) -> float:
    """Ollama's keep_alive in seconds (llmops.durations); a bad value is a 400."""
    try:
        return durations.parse_keep_alive(value, default)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
