"""Before any load: is the proxy up, does it take the key, does it serve the model?"""
from __future__ import annotations

import asyncio
import json

import aiohttp

from ..errors import PreflightError

PREFLIGHT_TIMEOUT = 10.0  # the same budget the dashboard's proxy probe uses


async def check(session: aiohttp.ClientSession, url: str, api_key: str, model: str | None,
                timeout: float = PREFLIGHT_TIMEOUT) -> str:
    """GET {url}/v1/models with the key; return the model to use (the asked one, or the first listed)."""
    endpoint = f"{url}/v1/models"
    try:
        async with asyncio.timeout(timeout):
            async with session.get(endpoint) as resp:
                status, text = resp.status, await resp.text(errors="replace")
    except TimeoutError:
        raise PreflightError(f"proxy at {url} did not answer {endpoint} within {timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise PreflightError(f"proxy unreachable at {url} ({type(exc).__name__}: {exc}); "
                             "is the stack running? (make start)") from exc
    if status != 200:
        raise PreflightError(_refusal(url, status, text, bool(api_key)))
    try:
        doc = json.loads(text)
        listed = [m["id"] for m in doc["data"]]
    except (ValueError, KeyError, TypeError):
        raise PreflightError(f"{endpoint} answered 200 but not an OpenAI model list: {text[:80]!r}") from None
    if not listed:
        raise PreflightError(f"proxy at {url} lists no models; check litellm_config.yaml")
    if model is None:
        return listed[0]
    if model not in listed:
        raise PreflightError(f"model {model!r} is unknown to the proxy at {url}; it lists: {', '.join(listed)}")
    return model


def _refusal(url: str, status: int, text: str, have_key: bool) -> str:
    """One line for a non-200 answer to /v1/models, knowing LiteLLM 1.108.7's odd auth answers."""
    body = " ".join(text.split())[:120]
    if not have_key and status in (401, 403, 500):
        # LiteLLM 1.108.7 answers a missing key with 500 (its auth error path fails to import prisma).
        return (f"proxy at {url} refused a request without a key (HTTP {status}); "
                "set LITELLM_MASTER_KEY in .env or pass --api-key")
    if status in (401, 403) or (status == 400 and ("No connected db" in text or "auth" in text.lower())):
        # ...and a wrong key with 400 "No connected db" (it looks the key up in a database it lacks).
        return f"proxy at {url} rejected the API key (HTTP {status}: {body}); check LITELLM_MASTER_KEY or --api-key"
    return f"proxy at {url} answered HTTP {status} to /v1/models: {body}"
