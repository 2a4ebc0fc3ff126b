"""The embedded backend's HTTP server: the app factory and the serve loop (routes in ollama_api, openai_api)."""
from __future__ import annotations

import asyncio
import logging
import signal
import socket

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from . import ollama_api, openai_api
from .engine import Engine
from .handling import BACKEND_KEY, Backend, backend_of, errors_and_metrics
from .metrics import BackendMetrics

log = logging.getLogger(__name__)


async def _root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def _metrics(request: web.Request) -> web.Response:
    body = backend_of(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(engine: Engine, max_queue: int = 512, metrics: BackendMetrics | None = None) -> web.Application:
    """The aiohttp application for one engine."""
    app = web.Application(middlewares=[errors_and_metrics], client_max_size=64 * 1024 * 1024)
    backend = Backend(engine, max_queue, metrics)
    app[BACKEND_KEY] = backend
    app.router.add_get("/", _root)  # aiohttp adds HEAD for every GET route
    app.router.add_get("/metrics", _metrics)
    ollama_api.add_routes(app)
    openai_api.add_routes(app)

    async def on_shutdown(_: web.Application) -> None:
        backend.scheduler.close_soon()

    async def on_cleanup(_: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(None, backend.scheduler.close)

    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


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
    app[BACKEND_KEY].engine.info.start_digest()
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
