"""supervisord.conf for the stack's services: the one file supervisord reads, written at each start."""
from __future__ import annotations

import shlex
from pathlib import Path

from ..settings import Settings


def _quote(word: str) -> str:
    # supervisor expands %(...)s in commands; a literal % must be doubled.
    return shlex.quote(word).replace("%", "%%")


def _path(path: Path) -> str:
    # supervisor expands %(...)s in every value: a literal % in a path must be doubled.
    return str(path).replace("%", "%%")


def render_config(settings: Settings, services: list) -> str:
    """supervisord.conf for these services; programs do not autostart: `start` brings them up in order.

    A service is read for its name, kind, command and env (llmops.stack.services.Service, which sits
    above the renderers and so is not imported here).
    """
    state, logs = settings.state_dir, settings.log_dir
    lines = [
        "; Written by llmops at each start; do not edit.",
        "[unix_http_server]",
        f"file={_path(state / 'supervisor.sock')}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={_path(logs / 'supervisord.log')}",
        f"pidfile={_path(state / 'supervisord.pid')}",
        f"directory={_path(settings.root)}",
        "umask=077",  # logs and files of the services readable by their owner only
        "logfile_maxbytes=5MB",
        "logfile_backups=2",
        "loglevel=info",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_path(state / 'supervisor.sock')}",
        "",
    ]
    for service in services:
        if service.kind != "supervised":
            continue
        env = ",".join(f'{k}="{v}"' for k, v in service.env.items())
        lines += [
            f"[program:{service.name}]",
            "command=" + " ".join(_quote(w) for w in service.command),
            f"directory={_path(settings.root)}",
            "autostart=false",
            "autorestart=true",
            "startsecs=2",
            "startretries=5",
            "stopasgroup=true",
            "killasgroup=true",
            "stopwaitsecs=10",
            "redirect_stderr=true",
            f"stdout_logfile={_path(logs / (service.name + '.log'))}",
            "stdout_logfile_maxbytes=10MB",
            "stdout_logfile_backups=2",
        ]
        if env:
            lines.append(f"environment={env}")
        lines.append("")
    return "\n".join(lines)
