"""The request handling the Ollama and OpenAI routes share: the Backend state, error mapping, streaming."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import web

from .embed_batch import EmbedBatcher, Item, Outcome, split
from .engine import Engine, Stats
from .loader import LoadedModels
from .metrics import BackendMetrics
from .options import BadRequest, GenOptions, parse_keep_alive
from .protocol import ModelNotFound, json_response, model_name, read_json
from .registry import ModelEntry, Registry, UnreadableModel
from .scheduler import Generation, Scheduler, ServerBusy
from .slots import Sequence
from .tokenizers import Tokenizers

log = logging.getLogger(__name__)

BACKEND_KEY = web.AppKey("backend", object)
CLIENT_GONE = 499  # nginx's code for "client closed request": a label value, never sent


class Backend:
    """The server's state: models, scheduler and metrics; routes reach it through the app."""

    def __init__(self, registry: Registry, models: LoadedModels, max_queue: int, metrics: BackendMetrics | None = None,
                 prefill_chunk: int = 128, tokenizers: Tokenizers | None = None):
        self.registry = registry
        self.models = models
        self.metrics = metrics or BackendMetrics()
        self.scheduler = Scheduler(max_queue, self.metrics, slots_for=lambda _tag: models.num_parallel,
                                   prefill_chunk=prefill_chunk)
        self.embed_batches = EmbedBatcher(self.run)
        self.tokenizers = tokenizers or Tokenizers()  # /api/tokenize's vocabularies, apart from the loaded models
        self.started_at = time.time()

    def entry(self, name: str, need: str | None = None) -> ModelEntry:
        """The requested model; 404 when absent, 400 (as Ollama) when an embedding model is asked to generate."""
        entry = self.registry.get(name)
        if need in ("generate", "chat") and entry.info.is_embedding:
            raise BadRequest(f'"{name}" does not support {need}')
        return entry

    def keep_alive(self, data: dict) -> float:
        return parse_keep_alive(data.get("keep_alive"), self.models.default_keep_alive)

    async def run(self, fn: Callable[[], object], *, whole_model: str | None = None) -> object:
        """Run fn on the engine thread between decode steps; returns its result."""
        return await self.scheduler.run(fn, whole_model=whole_model)

    async def generate(self, entry: ModelEntry, opts: GenOptions, arrived: float, keep_alive: float, *,
                       prompt: str = "", messages: list[dict] | None = None, prefix: list[int] | None = None,
                       kind: str = "generate") -> tuple[Generation, float]:
        """Take a slot of the model and start the generation; returns it once its model is loaded and its
        prompt is ready, with the seconds spent waiting and loading (Ollama's load_duration)."""
        models, metrics, tag = self.models, self.metrics, entry.tag

        def setup(gen: Generation):
            stats = Stats()
            began = time.perf_counter()
            engine = None

            def done(error: BaseException | None) -> None:
                """The sequence left its slot (any path): count it, give the model back, end the Generation."""
                try:
                    metrics.prompt_tokens.labels(tag).inc(stats.prompt_eval_count)
                    metrics.output_tokens.labels(tag).inc(stats.eval_count)
                    metrics.generation.labels(tag).observe(time.perf_counter() - began)
                    metrics.jobs.labels(kind).inc()
                    if stats.first_token_at is not None:
                        metrics.ttft.labels(tag).observe(stats.first_token_at - arrived)
                    if engine is not None:
                        models.release(tag, keep_alive)
                finally:
                    gen.finish(stats, error)

            try:
                engine, load_seconds = models.acquire(entry)
                stats.load_ns = int(load_seconds * 1e9)
                text = prompt if messages is None else render_chat(engine, messages)
                # Tokenizing here keeps a long prompt off the event loop.
                tokens = list(prefix or []) + engine.tokenize(text)
                stats.input_tokens = tokens
            except Exception as exc:
                gen.set_ready(exc)  # answered before any byte is sent: a clean error response
                done(None)
                return None
            gen.set_ready()
            return engine, Sequence(tokens, opts, stats, gen.cancel, gen.emit, done)

        gen, waited = await self.scheduler.start_sequence(tag, setup)
        try:
            await gen.wait_ready()
        except BaseException:
            gen.stop()
            raise
        return gen, waited

    async def embed(self, entry: ModelEntry, texts: list[str], truncate: bool, keep_alive: float) -> tuple[list[list[float]], int, float, float]:
        """Embeddings for texts: (vectors, tokens, load seconds, queue seconds). Requests for the same model
        that wait together run as one batch (embed_batch); an empty one (a load) or one that must not be
        truncated runs alone, so that its error stays its own."""
        models, metrics, tag = self.models, self.metrics, entry.tag

        def run(items: list[Item], started: float) -> list[Outcome]:
            engine, load_seconds = models.acquire(entry)
            counts: list[int] = []
            try:
                every = [text for item in items for text in item.texts]
                sizes = [len(item.texts) for item in items]
                vectors, counts = engine.embed(every, truncate, sizes) if every else ([], [0] * len(items))
                return split(vectors, counts, items, load_seconds, started)
            finally:
                metrics.prompt_tokens.labels(tag).inc(sum(counts))
                metrics.generation.labels(tag).observe(time.perf_counter() - started)
                metrics.jobs.labels("embed").inc(len(items))
                models.release(tag, items[-1].keep_alive)  # as in Ollama, the latest request sets the expiry

        item = Item(texts, keep_alive)
        if texts and truncate:
            outcome = await self.embed_batches.embed((tag, str(entry.path)), item, run)
        else:
            outcome = (await self.run(lambda: run([item], time.perf_counter())))[0]  # type: ignore[index]
        return outcome.vectors, outcome.count, outcome.load_seconds, outcome.waited

    async def load_only(self, entry: ModelEntry, keep_alive: float) -> float:
        """Load a model (an empty request), setting its keep_alive; returns the load seconds."""
        def job() -> float:
            _engine, seconds = self.models.acquire(entry)
            self.models.release(entry.tag, keep_alive)
            return seconds

        return await self.run(job)  # type: ignore[return-value]

    async def unload(self, tag: str) -> bool:
        """Unload a model once its running sequences have ended (it takes all the model's slots first)."""
        return await self.run(lambda: self.models.unload(tag), whole_model=tag)  # type: ignore[return-value]


def render_chat(engine: Engine, messages: list[dict]) -> str:
    """The prompt for a conversation; a template that rejects it makes a 400."""
    try:
        return engine.render_chat(messages)
    except Exception as exc:  # noqa: BLE001 - jinja raises many kinds; all mean a bad conversation
        raise BadRequest(f"chat template failed: {exc}") from exc


def backend_of(request: web.Request) -> Backend:
    return request.app[BACKEND_KEY]  # type: ignore[return-value]


async def begin(request: web.Request, need: str) -> tuple[float, Backend, dict, str, ModelEntry]:
    """A generation route's start: when it arrived, the backend, the JSON body, the model's name and entry."""
    arrived = time.perf_counter()
    backend = backend_of(request)
    data = await read_json(request)
    name = model_name(data)
    return arrived, backend, data, name, backend.entry(name, need=need)


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
    except UnreadableModel as exc:
        status = 400
        return _error_body(request, 400, str(exc))
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
        try:
            # A tool answer's pieces may start a second generation (toolchat.LazyCalls), which can fail too.
            async for text in gen.pieces():
                await response.write(piece(text))
            stats = await gen.result()
        except ConnectionError:
            raise
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
