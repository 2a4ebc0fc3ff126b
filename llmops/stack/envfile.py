"""The per-install `.env`: created from `.env.example` with fresh secrets (the proxy key, the alert token), mode 0600."""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from ..settings import ROOT, parse_env_text

KEY = "LITELLM_MASTER_KEY"
ALERT_TOKEN = "ALERT_RECEIVER_TOKEN"


def new_key() -> str:
    """`sk-` and 32 random bytes, url-safe."""
    return "sk-" + secrets.token_urlsafe(32)


def new_token() -> str:
    """32 random bytes, url-safe: the token Alertmanager sends to the dashboard's alert webhook."""
    return secrets.token_urlsafe(32)


# The secrets the stack generates: filled in when missing or empty, never replaced once set.
GENERATED: dict[str, Callable[[], str]] = {KEY: new_key, ALERT_TOKEN: new_token}


def ensure(env_file: Path, example: Path = ROOT / ".env.example") -> bool:
    """Create env_file from the example with new secrets when it is missing, or fill each empty generated one.

    Returns True when the file was written. The mode is always left at 0600. A malformed line
    fails here as it would when the settings load (ConfigError naming the file and the line).
    """
    written = False
    if not env_file.exists():
        text = example.read_text() if example.exists() else f"{KEY}=\n"
        written = True
    else:
        text = env_file.read_text()
    for name, generate in GENERATED.items():
        # Read as the settings read it, so "set" means the same here: `KEY= # x` and `KEY=""` are empty.
        found = parse_env_text(text, env_file).get(name)
        if found is None:
            text = text.rstrip("\n") + f"\n{name}={generate()}\n"
            written = True
        elif found[0] == "":
            lines = text.splitlines(keepends=True)
            line = lines[found[1] - 1]
            lines[found[1] - 1] = f"{name}={generate()}" + line[len(line.splitlines()[0]):]  # keeps its line end
            text = "".join(lines)
            written = True
    if written:
        # Create with 0600 from the first byte, so the secrets are never readable by others.
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
    os.chmod(env_file, 0o600)
    return written


def write_secret(path: Path, value: str) -> None:
    """Write a secret to a file readable by its owner only (e.g. the key file Prometheus reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    os.chmod(path, 0o600)
