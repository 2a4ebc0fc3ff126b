"""`llmops backend serve`: run the embedded Ollama-compatible backend (llama.cpp) until SIGTERM."""
from __future__ import annotations

import argparse
import asyncio
import os

# OpenMP threads that spin while waiting starve the proxy and the clients on a small machine, and
# collapse llama.cpp's own speed when the cores are shared; must be set before llama.cpp loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import logging
import sys
from pathlib import Path

from .. import settings
from ..errors import StackError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    cfg = settings.load()
    parser = argparse.ArgumentParser(prog="llmops backend serve", description=__doc__)
    parser.add_argument("--host", default=cfg.bind_host, help="address to bind (BIND_HOST)")
    parser.add_argument("--port", type=int, default=cfg.ollama_port, help="port to bind (OLLAMA_PORT)")
    parser.add_argument("--model-path", default=cfg.model_path, help="GGUF file (MODEL_PATH; empty: SmolLM2-135M)")
    parser.add_argument("--tag", default=cfg.model_tag, help="model name to serve (MODEL_TAG)")
    parser.add_argument("--max-queue", type=int, default=cfg.backend_max_queue, help="waiting requests before 503 (BACKEND_MAX_QUEUE)")
    parser.add_argument("--num-ctx", type=int, default=cfg.backend_num_ctx, help="context length (BACKEND_NUM_CTX)")
    parser.add_argument("--threads", type=int, default=cfg.backend_threads or None,
                        help="llama.cpp threads for generation and prompt (BACKEND_THREADS; default: half the cores)")
    parser.add_argument("--models-dir", default=str(cfg.root / str(cfg.backend_models_dir)),
                        help="folder of extra GGUF files (BACKEND_MODELS_DIR)")
    parser.add_argument("--keep-alive", default=None, help="idle time before a model unloads (BACKEND_KEEP_ALIVE)")
    parser.add_argument("--max-loaded", type=int, default=cfg.backend_max_loaded_models,
                        help="models loaded at once (BACKEND_MAX_LOADED_MODELS)")
    parser.add_argument("--num-parallel", type=int, default=cfg.backend_num_parallel,
                        help="sequences decoded at once per model (BACKEND_NUM_PARALLEL)")
    parser.add_argument("--prefill-chunk", type=int, default=cfg.backend_prefill_chunk,
                        help="prompt tokens evaluated per decode step (BACKEND_PREFILL_CHUNK)")
    parser.add_argument("--no-access-log", action="store_true", help="do not log each request")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(argv)
        from . import serve_forever
        from .build import build_app
        from .options import BadRequest, parse_keep_alive

        try:
            keep_alive = parse_keep_alive(args.keep_alive, settings.load().backend_keep_alive)
        except BadRequest as exc:
            raise StackError(f"--keep-alive: {exc}") from exc
        if args.model_path:
            from . import resolve_model_path

            resolve_model_path(args.model_path)  # a missing MODEL_PATH fails at start, naming it
        app = build_app(
            models_dir=Path(args.models_dir), num_ctx=args.num_ctx, threads=args.threads, max_queue=args.max_queue,
            keep_alive=keep_alive, max_loaded=args.max_loaded, model_path=args.model_path or "", model_tag=args.tag,
            num_parallel=max(1, args.num_parallel), prefill_chunk=max(1, args.prefill_chunk),
        )
        asyncio.run(serve_forever(app, args.host, args.port, access_log=not args.no_access_log))
    except StackError as exc:
        logging.getLogger("embedded_backend").error("%s", exc)
        return 2
    except OSError as exc:
        logging.getLogger("embedded_backend").error("cannot serve on %s:%s: %s", args.host, args.port, exc)
        return 1
    return 0

