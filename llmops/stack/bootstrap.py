"""Setup steps outside the venv: `.env`, the embedding model's GGUF, and system programs (Prometheus, ...)."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..settings import ROOT, Settings
from . import envfile

Printer = Callable[[str], None]


@dataclass(frozen=True)
class SystemProgram:
    """A program taken from PATH when present, else installed with the system's package manager."""

    label: str
    binaries: tuple[str, ...]
    debian: tuple[str, ...]
    brew: str | None
    needed_for: str
    recommends: bool = False
    # systemd units the distribution's package starts on install; they would hold the stack's ports.
    units: tuple[str, ...] = ()


PROMETHEUS = SystemProgram("Prometheus", ("prometheus", "promtool"), ("prometheus",), "prometheus", "metrics history",
                           units=("prometheus",))
NODE_EXPORTER = SystemProgram(
    "node_exporter", ("prometheus-node-exporter|node_exporter",), ("prometheus-node-exporter",), "node_exporter",
    "host metrics (optional)", units=("prometheus-node-exporter",),
)
ALERTMANAGER = SystemProgram(
    "Alertmanager", ("prometheus-alertmanager|alertmanager", "amtool"), ("prometheus-alertmanager",), "alertmanager",
    "sending alerts", units=("prometheus-alertmanager",),
)
REDIS = SystemProgram("Redis", ("redis-server",), ("redis-server",), "redis", "the queue shared by proxy workers",
                      units=("redis-server",))
# With its recommended packages (fonts among them), as a page needs to render.
CHROMIUM = SystemProgram("Chromium", ("chromium",), ("chromium", "chromium-driver"), None, "the browser test",
                         recommends=True)


def _found(binaries: tuple[str, ...]) -> bool:
    return all(any(shutil.which(alt) for alt in b.split("|")) for b in binaries)


def _privilege() -> list[str] | None:
    """The prefix that runs the package manager without a password prompt, or None."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def manual_command(program: SystemProgram) -> str:
    if platform.system() == "Darwin" and program.brew:
        return f"brew install {program.brew}"
    return "sudo apt-get install -y --no-install-recommends " + " ".join(program.debian)


def ensure_program(program: SystemProgram, out: Printer = print) -> bool:
    """Install the program when missing and possible without a prompt; say how otherwise."""
    if _found(program.binaries):
        return True
    prefix = _privilege()
    if platform.system() == "Darwin" and program.brew and shutil.which("brew"):
        command_sets = [["brew", "install", program.brew]]
    elif shutil.which("apt-get") and prefix is not None:
        env_prefix = prefix + ["env", "DEBIAN_FRONTEND=noninteractive"]
        extra = [] if program.recommends else ["--no-install-recommends"]
        install = env_prefix + ["apt-get", "install", "-y", "-q", *extra, *program.debian]
        command_sets = [install, env_prefix + ["apt-get", "update", "-q"], install]
    else:
        out(f"{program.label} is missing ({program.needed_for}); install it with: {manual_command(program)}")
        return False
    out(f"installing {program.label} ({program.needed_for}) with the system package manager ...")
    for index, command in enumerate(command_sets):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode == 0 and _found(program.binaries):
            out(f"{program.label} installed")
            _disable_units(program, prefix or [], out)
            return True
        if index == len(command_sets) - 1 and result.returncode != 0:
            out(result.stderr.strip()[-800:])
    out(f"{program.label} could not be installed; install it with: {manual_command(program)}")
    return False


def _disable_units(program: SystemProgram, prefix: list[str], out: Printer) -> None:
    """Stop the service the package we just installed started (on systemd hosts): the stack runs its own.

    Only units of a package this call installed are touched, so nothing the user ran before is stopped.
    """
    if not program.units or not shutil.which("systemctl") or not os.path.isdir("/run/systemd/system"):
        return
    for unit in program.units:
        active = subprocess.run(["systemctl", "is-active", "--quiet", unit]).returncode == 0
        if active:
            subprocess.run(prefix + ["systemctl", "disable", "--now", unit], capture_output=True)
            out(f"stopped and disabled the {unit} service the package started: it would hold the port "
                "the stack's own copy uses (re-enable it with: systemctl enable --now " + unit + ")")


def ensure_embedding_model(out: Printer = print, cache_dir: Path | None = None) -> bool:
    """Convert the packaged all-MiniLM-L6-v2 to its cached GGUF once; one line either way."""
    # Deferred: gguf and numpy are slow to import, which every other `python -m llmops` command would pay.
    from ..backend import embedmodel

    try:
        made = embedmodel.ensure(cache_dir)
    except embedmodel.EmbedModelError as exc:
        out(f"error: the embedding model {embedmodel.TAG} cannot be made: {exc}")
        return False
    size_mb = made.path.stat().st_size / 1e6
    if made.converted:
        out(f"embedding model {embedmodel.TAG}: converted to {made.path} ({size_mb:.0f} MB, {made.seconds:.1f} s)")
    else:
        out(f"embedding model {embedmodel.TAG}: {made.path} is up to date")
    return True


def prepare_gemma(out: Printer = print) -> None:
    """Assemble gemma3:270m from its chunk packages and check its SHA256SUMS once, not on the first request."""
    from ..backend import sources

    try:
        out(f"model {sources.GEMMA_TAG}: {sources.gemma_path()} (sha256 checked)")
    except Exception as exc:  # noqa: BLE001 - a missing model hides that model only; the stack still runs
        out(f"model {sources.GEMMA_TAG} is not available: {exc}")


def setup(settings: Settings, out: Printer = print, with_test_tools: bool = False) -> bool:
    """Everything `make setup` does once the venv exists. False when the embedding model or the tests' tools fail."""
    if envfile.ensure(settings.env_file, ROOT / ".env.example"):
        out(f"wrote {settings.env_file} (mode 0600): a new LITELLM_MASTER_KEY and ALERT_RECEIVER_TOKEN where unset")
    if not ensure_embedding_model(out):
        return False
    prometheus = ensure_program(PROMETHEUS, out)
    if not prometheus:
        # Not fatal for the stack: it runs without it, and the dashboard says metrics are unavailable.
        out("the stack will run without Prometheus; the dashboard will say metrics are unavailable")
    ensure_program(NODE_EXPORTER, out)
    alertmanager = ensure_program(ALERTMANAGER, out) if settings.alertmanager_enabled else True
    if not alertmanager:
        out("the stack will run without Alertmanager; alerts show on the dashboard but are not sent anywhere")
    from ..proxy.config import redis_needed

    if redis_needed(settings) and not ensure_program(REDIS, out):
        out("the proxy's workers will each keep their own queue until Redis is installed")
    prepare_gemma(out)
    if with_test_tools:
        # The tests need Chromium, Prometheus, Alertmanager (amtool included) and Redis (the shared queue).
        return (ensure_program(CHROMIUM, out) and prometheus and ensure_program(ALERTMANAGER, out)
                and ensure_program(REDIS, out))
    return True
