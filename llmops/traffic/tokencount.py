"""How a prompt file's tokens are counted: the served model's tokenizer where the stack can reach it, else an estimate.

The generator talks to the proxy, which has no tokenizer of an Ollama model (docs/traffic-generator.md), but
the stack's embedded backend answers POST /api/tokenize with the model's own llama.cpp tokenizer
(docs/backend.md). `--token-count auto` (the default) counts there and falls back to the stated estimate when
the backend cannot be reached or has no such route (a real Ollama answers 404), saying why; `model` insists
(a run that cannot count stops before it starts); `estimate` never asks.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from ..errors import ConfigError

MODES = ("auto", "model", "estimate")
CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb for English text
ESTIMATE = f"estimate: 1 token per {CHARS_PER_TOKEN} characters, rounded up"
BATCH = 256  # texts per /api/tokenize call: ~0.5 MB of ShareGPT replies, a few tens of ms to tokenize
TIMEOUT = 30.0  # seconds per call: the first one loads the vocabulary (times: docs/backend.md)
_LOCAL_PROVIDERS = ("ollama", "ollama_chat")


class TokenCountError(Exception):
    """The model's tokenizer could not count (unreachable, no route, a bad answer); the message says why."""


def estimate_tokens(text: str) -> int:
    """Tokens of a text, estimated (used where no tokenizer of the served model can be reached)."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


@dataclass
class Estimate:
    """The stated estimate, and why it is used."""

    why: str = ""
    texts: int = 0

    @property
    def label(self) -> str:
        return f"{ESTIMATE} ({self.why})" if self.why else ESTIMATE

    def count(self, texts: list[str]) -> list[int]:
        self.texts += len(texts)
        return [estimate_tokens(text) for text in texts]  # the module's name, so a test or bench can wrap it

    def public(self) -> dict:
        return {"counter": "estimate", "label": self.label, "why": self.why or None, "texts": self.texts}


@dataclass
class ModelTokenizer:
    """A model's own tokenizer behind a backend's POST /api/tokenize, BATCH texts a call."""

    url: str  # the backend's base URL
    model: str  # the model's name on the backend (the proxy's may differ)
    post: Callable[..., requests.Response] = field(default=requests.post, repr=False)
    texts: int = 0
    calls: int = 0

    @property
    def label(self) -> str:
        return f"{self.model}'s tokenizer (embedded backend)"

    def count(self, texts: list[str]) -> list[int]:
        """Each text's tokens as the model counts them, without special tokens: the text's own tokens, which
        is what an answer of that text generates (max_tokens) and what a prompt adds to the template's."""
        counts: list[int] = []
        for start in range(0, len(texts), BATCH):
            counts.extend(self._call(texts[start:start + BATCH]))
        self.texts += len(texts)
        return counts

    def _call(self, texts: list[str]) -> list[int]:
        where = f"the backend at {self.url}"
        try:
            answer = self.post(f"{self.url}/api/tokenize", json={"model": self.model, "content": texts},
                               timeout=TIMEOUT)
        except requests.Timeout:
            raise TokenCountError(f"{where} did not answer /api/tokenize within {TIMEOUT:g} s") from None
        except requests.RequestException as exc:
            raise TokenCountError(f"{where} is unreachable ({type(exc).__name__})") from None
        self.calls += 1
        try:
            body = answer.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if answer.status_code == 404:
            if isinstance(error, str) and "not found" in error:
                raise TokenCountError(f"{where} does not serve {self.model}: {error}")
            raise TokenCountError(f"{where} has no /api/tokenize (404: a real Ollama has no tokenizer route)")
        if answer.status_code != 200:
            detail = error if isinstance(error, str) else answer.text[:200].strip()
            raise TokenCountError(f"{where} answered /api/tokenize with {answer.status_code}: {detail}")
        tokens = body.get("tokens") if isinstance(body, dict) else None
        if (not isinstance(tokens, list) or len(tokens) != len(texts)
                or not all(isinstance(t, list) and all(isinstance(i, int) for i in t) for t in tokens)):
            raise TokenCountError(f"{where} answered /api/tokenize with no token list per text "
                                  f"({len(texts)} sent)")
        return [len(t) for t in tokens]

    def public(self) -> dict:
        return {"counter": "model", "label": self.label, "model": self.model, "url": self.url, "why": None,
                "texts": self.texts, "calls": self.calls}


def backend_for(model: str, backend_url: str | None = None) -> tuple[str, str]:
    """(backend base URL, the model's name there) for a model the proxy serves, from the stack's settings and
    the proxy's config; TokenCountError when the proxy routes it to no Ollama API."""
    from .. import settings as stack_settings
    from ..proxy import config as proxy_config

    try:
        loaded = stack_settings.load()
    except ConfigError as exc:
        if backend_url is None:
            raise TokenCountError(f"the stack's settings could not be read ({exc})") from None
        loaded = None
    name, url = model, None
    entries = []
    if loaded is not None:
        try:
            entries = proxy_config.validate(loaded.litellm_config_path).get("model_list") or []
        except (ConfigError, OSError):
            entries = []  # the proxy's own start reports a bad config; here the names are taken as they are
    for entry in entries:
        if str(entry.get("model_name")) != model:
            continue
        params = entry.get("litellm_params") or {}
        provider, _, routed = str(params.get("model", "")).partition("/")
        if provider not in _LOCAL_PROVIDERS:
            raise TokenCountError(f"the proxy routes {model} to {provider}/, not to an Ollama API the stack runs")
        name = routed or model
        base = params.get("api_base")
        if isinstance(base, str) and base.startswith("http"):
            url = base
        break
    if backend_url is not None:
        url = backend_url
    elif url is None:
        url = loaded.backend_urls[0]
    return url.rstrip("/"), name


def counter_for(mode: str, model: str, backend_url: str | None = None):
    """The counter a run uses before anything is counted; TokenCountError in mode "model" when none is reachable."""
    if mode == "estimate":
        return Estimate("--token-count estimate")
    try:
        url, name = backend_for(model, backend_url)
    except TokenCountError as exc:
        if mode == "model":
            raise
        return Estimate(str(exc))
    return ModelTokenizer(url, name)


def draw(parsed, sample: int | None, seed: int, prune: bool, lengths: bool, mode: str, model: str,
         backend_url: str | None = None):
    """The run's prompts (datasets.Parsed.draw) with its tokens counted as `mode` says: in auto, a tokenizer that
    fails partway makes the whole draw again with the estimate (one counter for every record), saying why; in
    model, TokenCountError. Blocking (HTTP): run it off the event loop."""
    if mode == "estimate" or not parsed.needs_tokens(prune, lengths):
        counter = Estimate("--token-count estimate") if mode == "estimate" else None
        return parsed.draw(sample, seed, prune, counter, lengths)
    counter = counter_for(mode, model, backend_url)
    try:
        return parsed.draw(sample, seed, prune, counter, lengths)
    except TokenCountError as exc:
        if mode == "model":
            raise
        return parsed.draw(sample, seed, prune, Estimate(str(exc)), lengths)
