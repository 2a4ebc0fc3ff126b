"""Request handling shared by the Ollama and OpenAI routes: the backend's state, error mapping, streaming."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import web

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
