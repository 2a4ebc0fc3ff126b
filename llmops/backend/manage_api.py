"""Model management in Ollama's shapes: /api/pull, /api/copy, /api/delete and /api/create (from a local GGUF)."""
from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from .gguf_meta import BadModelFile, read_header
from .handling import backend_of
from .options import BadRequest
from .protocol import ModelNotFound, dumps, get_bool, json_response, model_name, normalize_name, read_json

NDJSON = "application/x-ndjson"
# Fields of /api/create that need a registry's layers or a quantiser, which this backend has not.
_CREATE_UNSUPPORTED = ("files", "adapters", "quantize", "template", "system", "parameters", "messages", "license")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/pull", pull)
    app.router.add_post("/api/copy", copy)
    app.router.add_delete("/api/delete", delete)
    app.router.add_post("/api/create", create)


async def _progress(request: web.Request, stream: bool, steps: list[dict]) -> web.StreamResponse:
    """Ollama's progress answer: one NDJSON line a step when streamed, else the last step."""
    if not stream:
        return json_response(steps[-1])
    response = web.StreamResponse(headers={"Content-Type": NDJSON})
    await response.prepare(request)
    for step in steps:
        await response.write(dumps(step) + b"\n")
    await response.write_eof()
    return response


def _how_to_add(backend, name: str) -> str:
    folder = backend.registry.models_dir
    where = f"put its .gguf file in {folder} (BACKEND_MODELS_DIR)" if folder else "set BACKEND_MODELS_DIR and put its .gguf file there"
    return (f"pull model manifest: model '{name}' is not available: the embedded backend reaches no registry. "
            f'To add a model, {where}, or POST /api/create {{"model": "{name}", "from": "/path/to/model.gguf"}}')


async def pull(request: web.Request) -> web.StreamResponse:
    backend = backend_of(request)
    data = await read_json(request)
    name = model_name(data)
    stream = get_bool(data, "stream", True)
    registry = backend.registry
    loop = asyncio.get_running_loop()
    present = await loop.run_in_executor(None, lambda: registry.has(name) or registry.restore(name))
    if not present:
        message = _how_to_add(backend, name)
        if stream:
            # Ollama reports a failed pull inside the stream, after the 200 status line.
            return await _progress(request, True, [{"status": "pulling manifest"}, {"error": message}])
        return json_response({"error": message}, 404)
    entry = await loop.run_in_executor(None, registry.get, name)
    digest = await loop.run_in_executor(None, lambda: entry.info.digest)
    size = entry.info.size
    return await _progress(request, stream, [
        {"status": "pulling manifest"},
        {"status": f"pulling {digest[:12]}", "digest": f"sha256:{digest}", "total": size, "completed": size},
        {"status": "verifying sha256 digest"},
        {"status": "writing manifest"},
        {"status": "success"},
    ])


def _need_models_dir(backend) -> None:
    if backend.registry.models_dir is None:
        raise BadRequest("no models folder: set BACKEND_MODELS_DIR to copy, create or delete models")


async def copy(request: web.Request) -> web.Response:
    backend = backend_of(request)
    data = await read_json(request)
    source, destination = data.get("source"), data.get("destination")
    if not isinstance(source, str) or not source:
        raise BadRequest("source is required")
    if not isinstance(destination, str) or not destination:
        raise BadRequest("destination is required")
    _need_models_dir(backend)
    try:
        entry = backend.registry.get(source)
    except ModelNotFound:
        return json_response({"error": f'model "{source}" not found'}, 404)
    backend.registry.link(destination, entry.path)
    return web.Response(status=200)


async def delete(request: web.Request) -> web.Response:
    backend = backend_of(request)
    data = await read_json(request)
    name = model_name(data)
    _need_models_dir(backend)
    if not backend.registry.has(name):
        return json_response({"error": f"model '{name}' not found"}, 404)
    await backend.unload(normalize_name(name))
    backend.registry.delete(name)
    return web.Response(status=200)


def _local_file(source: str) -> Path | None:
    """`from` as a path on this machine (absolute, ~ or ./, or a name ending in .gguf)."""
    if source.startswith(("/", "~", "./", "../")) or source.endswith(".gguf"):
        return Path(source).expanduser()
    return None


async def create(request: web.Request) -> web.StreamResponse:
    backend = backend_of(request)
    data = await read_json(request)
    name = model_name(data)
    stream = get_bool(data, "stream", True)
    for key in _CREATE_UNSUPPORTED:
        if data.get(key):
            raise BadRequest(f"create: {key!r} is not supported by the embedded backend; use \"from\" with a GGUF file or a model name")
    source = data.get("from")
    if not isinstance(source, str) or not source:
        raise BadRequest('create needs "from": the path of a local .gguf file, or a model name')
    _need_models_dir(backend)
    loop = asyncio.get_running_loop()
    path = _local_file(source)
    if path is None:
        try:
            path = backend.registry.get(source).path
        except ModelNotFound:
            return json_response({"error": f"model '{source}' not found"}, 404)
    else:
        if not path.is_file():
            raise BadRequest(f"create: {source} is not a file on the backend's machine")
        try:
            await loop.run_in_executor(None, read_header, path)
        except BadModelFile as exc:
            raise BadRequest(f"create: {exc}") from exc
    backend.registry.link(name, path.resolve())
    entry = await loop.run_in_executor(None, backend.registry.get, name)
    digest = await loop.run_in_executor(None, lambda: entry.info.digest)
    return await _progress(request, stream, [
        {"status": "parsing GGUF"},
        {"status": f"using existing layer sha256:{digest}"},
        {"status": "writing manifest"},
        {"status": "success"},
    ])
