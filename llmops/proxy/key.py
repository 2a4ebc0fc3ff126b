"""The proxy key: the one Authorization header built from it, the one redaction marker, its key file's path."""
from __future__ import annotations

from pathlib import Path

REDACTED = "[redacted]"


def auth_headers(key: str | None) -> dict[str, str]:
    """{"Authorization": "Bearer <key>"}, or no header at all when there is no key."""
    return {"Authorization": f"Bearer {key}"} if key else {}


def redact(text: str, key: str | None) -> str:
    """Hide the key wherever a text (a log line, an error) carries it."""
    return text.replace(key, REDACTED) if key else text


def redact_bytes(body: bytes, key: str | None) -> bytes:
    """redact() for a response body."""
    return body.replace(key.encode(), REDACTED.encode()) if key else body


def key_file(state_dir: Path) -> Path:
    """The 0600 file holding the key for Prometheus's scrape of LiteLLM (written at each start)."""
    return state_dir / "litellm_key"
