"""The embedded backend's HTTP server: app factory, the serve loop and /metrics."""
from __future__ import annotations

import asyncio
import logging
import math
import signal
import socket

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .engine import Engine
from .handling import BACKEND_KEY, Backend, backend_of, errors_and_metrics
from .loader import LoadedModels
from .metrics import BackendMetrics
from .registry import ModelSource, Registry
from .tokenizers import Tokenizers

log = logging.getLogger(__name__)


async def _root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def _metrics(request: web.Request) -> web.Response:
    backend = backend_of(request)
    chat_models = [entry.tag for entry in backend.registry.entries() if not entry.info.is_embedding]
    backend.metrics.publish_slots(chat_models, backend.models.num_parallel)
    body = backend.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def single_model(engine: Engine) -> tuple[Registry, LoadedModels]:
    """A registry and loader serving one ready-made engine (the tests' fake, or a caller's engine)."""
    registry = Registry([ModelSource(engine.info.tag, lambda: engine.info.path)],
                        info_for=lambda tag, path: engine.info)
    models = LoadedModels(lambda entry: engine, max_loaded=1, keep_alive=math.inf, num_ctx=engine.n_ctx,
                          num_parallel=getattr(engine, "n_slots", 1))
    models.preload(registry.get(engine.info.tag), engine)
    return registry, models


def create_app(engine: Engine | None = None, max_queue: int = 512, metrics: BackendMetrics | None = None, *,
               registry: Registry | None = None, models: LoadedModels | None = None,
               prefill_chunk: int = 128, tokenizers: Tokenizers | None = None) -> web.Application:
    """The aiohttp application: one ready engine, or a registry of models loaded on demand; `tokenizers`
    (default: vocabulary-only loads of the models' files) answers /api/tokenize."""
    from . import embed_api, manage_api, ollama_api, openai_api, tokenize_api

    if engine is not None:
        registry, models = single_model(engine)
    if registry is None or models is None:
        raise ValueError("create_app needs an engine, or a registry and its loaded-models manager")
    app = web.Application(middlewares=[errors_and_metrics], client_max_size=64 * 1024 * 1024)
    backend = Backend(registry, models, max_queue, metrics, prefill_chunk=prefill_chunk, tokenizers=tokenizers)
    backend.metrics.watch_models(models)
    app[BACKEND_KEY] = backend
    app.router.add_get("/", _root)  # aiohttp adds HEAD for every GET route
    app.router.add_get("/metrics", _metrics)
    ollama_api.add_routes(app)
    openai_api.add_routes(app)
    embed_api.add_routes(app)
    manage_api.add_routes(app)
    tokenize_api.add_routes(app)

    async def on_startup(_: web.Application) -> None:
        models.attach(asyncio.get_running_loop(), backend.run)

    async def on_shutdown(_: web.Application) -> None:
        backend.scheduler.close_soon()

    async def on_cleanup(_: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(None, backend.scheduler.close)
        models.unload_all()
        backend.tokenizers.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


def _start_digests(registry: Registry) -> None:
    for entry in registry.entries():
        entry.info.start_digest()


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this on Linux (aiohttp also sets it per connection): without it a
    # small NDJSON chunk can wait ~40 ms for the client's delayed ACK (Nagle).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def start(app: web.Application, host: str, port: int, access_log: bool = False) -> tuple[web.AppRunner, int]:
    """Start serving app; returns the runner (for cleanup) and the bound port."""
    # handler_cancellation: a client that disconnects cancels its handler, so a queued or
    # non-streamed request stops waiting and its generation stops.
    runner = web.AppRunner(
        app, handler_cancellation=True, shutdown_timeout=5.0, access_log=log if access_log else None
    )
    await runner.setup()
    sock = listen_socket(host, port)
    await web.SockSite(runner, sock).start()
    backend = app[BACKEND_KEY]
    await asyncio.get_running_loop().run_in_executor(None, _start_digests, backend.registry)
    return runner, sock.getsockname()[1]


async def serve_forever(app: web.Application, host: str, port: int, access_log: bool = True) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly."""
    runner, bound = await start(app, host, port, access_log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("embedded backend listening on http://%s:%d", host, bound)
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
