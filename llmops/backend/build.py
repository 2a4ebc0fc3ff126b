"""The embedded backend as `make start` runs it: every packaged and dropped-in model, loaded on demand."""
from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from ..errors import ConfigError
from .engine import LlamaEngine, build_llama_state
from .loader import LoadedModels
from .model import default_model_path
from .registry import ModelEntry, Registry
from .server import create_app
from .sources import package_sources

log = logging.getLogger(__name__)


def build_app(*, models_dir: Path | None, num_ctx: int = 2048, threads: int | None = None, max_queue: int = 512,
              keep_alive: float = 300.0, max_loaded: int = 3, model_path: str = "", model_tag: str = "smollm2:135m",
              extra_sources: list | None = None, num_parallel: int = 4, prefill_chunk: int = 128) -> web.Application:
    """The app over a registry of the package models, MODEL_PATH and the models folder."""
    # llama.cpp's library (and what grammars and schemas need) is imported now, not at the first
    # request (docs/backend.md, Cold load): a cold load then measures the model alone, and the idle process already
    # holds its code, so RSS after an unload compares with a like-for-like idle figure.
    import jsonschema  # noqa: F401
    import llama_cpp  # noqa: F401
    import llama_cpp.llama_chat_format  # noqa: F401 - jinja2, for the chat templates
    import llama_cpp.llama_grammar  # noqa: F401
    import numpy  # noqa: F401

    from . import grammar_sampler  # noqa: F401
    from .loader import fix_malloc_thresholds, release_heap

    fix_malloc_thresholds()
    try:
        build_llama_state(default_model_path())
    except ConfigError as exc:  # no packaged model: the first load builds it instead
        log.info("llama.cpp state not built at start: %s", exc)
    release_heap()  # what the vocabulary's load freed goes back to the OS, as after an unload

    registry = Registry(package_sources(model_path, model_tag) + list(extra_sources or []), models_dir)
    models: LoadedModels

    def load(entry: ModelEntry) -> LlamaEngine:
        return LlamaEngine(entry.path, entry.tag, n_ctx=models.num_ctx_for(entry.info), n_threads=threads, info=entry.info,
                           n_slots=num_parallel, n_batch=max(512, prefill_chunk + num_parallel))

    models = LoadedModels(load, max_loaded=max_loaded, keep_alive=keep_alive, num_ctx=num_ctx, num_parallel=num_parallel)
    return create_app(max_queue=max_queue, registry=registry, models=models, prefill_chunk=prefill_chunk)
