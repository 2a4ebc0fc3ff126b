"""What a run ran against: the proxy's and backend's versions and models, asked from the stack itself."""
from __future__ import annotations

import asyncio
import json

import aiohttp

UNKNOWN = "unknown"
ASK_TIMEOUT = 3.0  # each question; provenance is decoration and must not delay a run much


async def _get_json(session: aiohttp.ClientSession, url: str, timeout: float) -> dict | None:
    """The JSON object at `url`, or None for any failure (down, refused, not JSON)."""
    try:
        async with asyncio.timeout(timeout):
            async with session.get(url) as resp:
                if resp.status != 200:
                    return None
                doc = json.loads(await resp.text(errors="replace"))
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


async def proxy_facts(session: aiohttp.ClientSession, url: str, timeout: float = ASK_TIMEOUT) -> dict:
    """LiteLLM's version (from its readiness details) and the model ids /v1/models lists."""
    # LiteLLM 1.108.7's public /health/readiness no longer names the version; /details does, with the key.
    details, ready, models = await asyncio.gather(_get_json(session, f"{url}/health/readiness/details", timeout),
                                                  _get_json(session, f"{url}/health/readiness", timeout),
                                                  _get_json(session, f"{url}/v1/models", timeout))
    version = (details or {}).get("litellm_version") or (ready or {}).get("litellm_version")
    listed = [m.get("id") for m in (models or {}).get("data", []) if isinstance(m, dict)]
    return {"url": url, "software": "litellm" if version else UNKNOWN, "version": version or UNKNOWN,
            "models": [m for m in listed if isinstance(m, str)]}


async def backend_facts(session: aiohttp.ClientSession, url: str, timeout: float = ASK_TIMEOUT) -> dict:
    """An Ollama-API backend's version and its models with digest, size and quantisation."""
    version, tags = await asyncio.gather(_get_json(session, f"{url}/api/version", timeout),
                                         _get_json(session, f"{url}/api/tags", timeout))
    models = []
    for m in (tags or {}).get("models", []):
        if not isinstance(m, dict):
            continue
        details = m.get("details") if isinstance(m.get("details"), dict) else {}
        models.append({"name": m.get("name"), "digest": m.get("digest"), "size": m.get("size"),
                       "parameter_size": details.get("parameter_size"),
                       "quantization_level": details.get("quantization_level")})
    return {"url": url, "version": (version or {}).get("version") or UNKNOWN, "models": models}


async def stack_facts(proxy_url: str, api_key: str | None, backend_urls: list[str],
                      timeout: float = ASK_TIMEOUT) -> dict:
    """Versions and models of the proxy and each backend; a part that does not answer says "unknown"."""
    proxy_headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    # Two sessions: the proxy's key is not the backends' secret and must not travel to them.
    async with aiohttp.ClientSession(headers=proxy_headers) as proxy_session, aiohttp.ClientSession() as plain:
        proxy, *backends = await asyncio.gather(proxy_facts(proxy_session, proxy_url, timeout),
                                                *(backend_facts(plain, u, timeout) for u in backend_urls))
    if not backends:
        backends = [{"url": None, "version": UNKNOWN, "models": []}]
    return {"proxy": proxy, "backends": backends}
