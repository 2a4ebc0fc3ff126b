"""The embedded backend's HTTP server: app factory, error mapping, streaming and the serve loop."""
from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .engine import Engine, Stats
from .metrics import BackendMetrics
from .options import BadRequest, GenOptions
from .protocol import ModelNotFound, json_response
from .scheduler import Generation, Scheduler, ServerBusy

log = logging.getLogger(__name__)

BACKEND_KEY = web.AppKey("backend", object)
CLIENT_GONE = 499  # nginx's code for "client closed request": a label value, never sent


class Backend:
    """The server's state: engine, scheduler and metrics; routes reach it through the app."""

    def __init__(self, engine: Engine, max_queue: int, metrics: BackendMetrics | None = None):
        self.engine = engine
        self.tag = engine.info.tag
        self.metrics = metrics or BackendMetrics()
        self.scheduler = Scheduler(max_queue, self.metrics)
        self.started_at = time.time()

    def render_chat(self, messages: list[dict]) -> str:
        """The prompt for a conversation; a template that rejects it makes a 400."""
        try:
            return self.engine.render_chat(messages)
        except Exception as exc:  # noqa: BLE001 - jinja raises many kinds; all mean a bad conversation
            raise BadRequest(f"chat template failed: {exc}") from exc

    async def generate(self, prompt: str, opts: GenOptions, arrived: float, prefix: list[int] | None = None) -> tuple[Generation, float]:
        """Queue a generation; returns it once it holds the engine, with the seconds it waited."""
        engine, metrics, tag = self.engine, self.metrics, self.tag

        def job(gen: Generation) -> Stats:
            stats = Stats()
            began = time.perf_counter()
            try:
                # Tokenizing here keeps a long prompt off the event loop.
                tokens = list(prefix or []) + engine.tokenize(prompt)
                stats.input_tokens = tokens
                for piece in engine.generate(tokens, opts, gen.cancel, stats):
                    gen.emit(piece)
            finally:
                metrics.prompt_tokens.labels(tag).inc(stats.prompt_eval_count)
                metrics.output_tokens.labels(tag).inc(stats.eval_count)
                metrics.generation.labels(tag).observe(time.perf_counter() - began)
                if stats.first_token_at is not None:
                    metrics.ttft.labels(tag).observe(stats.first_token_at - arrived)
            return stats

        return await self.scheduler.start(job)


def backend_of(request: web.Request) -> Backend:
    return request.app[BACKEND_KEY]  # type: ignore[return-value]


def _error_body(request: web.Request, status: int, message: str) -> web.Response:
    if request.path.startswith("/v1/"):
        kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        return json_response({"error": {"message": message, "type": kind, "param": None, "code": None}}, status)
    return json_response({"error": message}, status)


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Callable) -> web.StreamResponse:
    """The one place that turns exceptions into responses and counts every request."""
    resource = request.match_info.route.resource
    endpoint = resource.canonical if resource is not None else "other"
    status = 500
    try:
        response = await handler(request)
        status = request.get("final_status", response.status)
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except BadRequest as exc:
        status = 400
        return _error_body(request, 400, str(exc))
    except ModelNotFound as exc:
        status = 404
        return _error_body(request, 404, f'model "{exc.args[0]}" not found, try pulling it first')
    except ServerBusy as exc:
        status = 503
        return _error_body(request, 503, str(exc))
    except asyncio.CancelledError:
        status = CLIENT_GONE
        raise
    except Exception as exc:  # noqa: BLE001 - the error handler of last resort
        log.exception("%s %s failed", request.method, request.path)
        return _error_body(request, 500, f"internal error: {exc}")
    finally:
        backend_of(request).metrics.requests.labels(endpoint, str(status)).inc()


async def stream_out(
    request: web.Request,
    gen: Generation,
    content_type: str,
    piece: Callable[[str], bytes],
    final: Callable[[Stats], bytes],
    error: Callable[[str], bytes],
) -> web.StreamResponse:
    """Write one encoded chunk per text piece, then the final chunk; stop the engine if the client goes."""
    response = web.StreamResponse(headers={"Content-Type": content_type})
    try:
        await response.prepare(request)
        async for text in gen.pieces():
            await response.write(piece(text))
        try:
            stats = await gen.result()
        except Exception as exc:  # noqa: BLE001 - headers are sent: report in-band like Ollama
            log.exception("generation failed")
            await response.write(error(f"generation failed: {exc}"))
        else:
            if stats.done_reason == "cancel":
                await response.write(error("generation cancelled: server shutting down"))
            else:
                await response.write(final(stats))
        await response.write_eof()
    except ConnectionError:
        request["final_status"] = CLIENT_GONE
    finally:
        gen.stop()  # no-op when finished; frees the engine at its next token otherwise
    return response


async def collect(gen: Generation) -> tuple[str, Stats]:
    """The whole text of a non-streamed generation."""
    try:
        parts = [text async for text in gen.pieces()]
        stats = await gen.result()
    finally:
        gen.stop()
    if stats.done_reason == "cancel":
        raise ServerBusy("generation cancelled: server shutting down")
    return "".join(parts), stats


async def _root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def _metrics(request: web.Request) -> web.Response:
    body = backend_of(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(engine: Engine, max_queue: int = 512, metrics: BackendMetrics | None = None) -> web.Application:
    """The aiohttp application for one engine."""
    from . import ollama_api, openai_api

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
