"""Control of supervisord (from PyPI): the config we write, starting it, and its XML-RPC interface."""
from __future__ import annotations

import os
import signal
import subprocess
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

import psutil
from supervisor.xmlrpc import SupervisorTransport

from ..errors import ServiceError
from ..polling import poll_until
from ..render.supervisord_config import render_config
from ..settings import Settings
from .services import Service, python

STOPPED_STATES = {"STOPPED", "EXITED", "FATAL", "UNKNOWN"}
SOCKET_PATH_MAX = 107  # AF_UNIX sun_path, less the terminating NUL


@dataclass
class ProcessInfo:
    """What supervisor knows of one program."""

    name: str
    state: str
    pid: int
    start: float
    description: str


class Supervisor:
    """One supervisord instance owned by this stack (its socket and pid file live in the state dir)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.conf = settings.state_dir / "supervisord.conf"
        self.sock = settings.state_dir / "supervisor.sock"
        self.pidfile = settings.state_dir / "supervisord.pid"

    def _proxy(self):
        transport = SupervisorTransport(None, None, f"unix://{self.sock}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def running(self) -> bool:
        """True when our supervisord answers on its socket."""
        if not self.sock.exists():
            return False
        try:
            return self._proxy().supervisor.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def clean_stale(self) -> bool:
        """Remove the socket and pid file left by a supervisord that died (crash, reboot)."""
        if self.running():
            return False
        stale = False
        pid = self.pid()
        if pid and _alive(pid) and _is_our_supervisord(pid, self.conf):
            return False
        for path in (self.sock, self.pidfile):
            if path.exists():
                path.unlink()
                stale = True
        return stale

    def write_config(self, services: list[Service]) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(render_config(self.settings, services))

    def launch(self, env: dict[str, str], timeout: float = 15.0) -> None:
        """Start supervisord (it daemonizes itself) and wait until it answers."""
        if len(str(self.sock).encode()) > SOCKET_PATH_MAX:
            raise ServiceError(f"{self.sock}: path too long for a unix socket ({len(str(self.sock))} > "
                               f"{SOCKET_PATH_MAX} bytes); set LLMOPS_STATE_DIR to a shorter folder")
        self.clean_stale()
        supervisord = str(Path(python()).parent / "supervisord")
        result = subprocess.run([supervisord, "-c", str(self.conf)], env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise ServiceError(f"supervisord failed to start: {(result.stderr or result.stdout).strip()}")
        if poll_until(self.running, timeout, interval=0.1):
            return
        raise ServiceError(f"supervisord did not answer on {self.sock} within {timeout:.0f} s")

    def reload(self) -> None:
        """Make a running supervisord pick up program changes in the config (added/removed programs)."""
        proxy = self._proxy()
        added, changed, removed = proxy.supervisor.reloadConfig()[0]
        for name in removed + changed:
            try:
                proxy.supervisor.stopProcess(name, True)
            except xmlrpc.client.Fault:
                pass
            proxy.supervisor.removeProcessGroup(name)
        for name in added + changed:
            proxy.supervisor.addProcessGroup(name)

    def info(self, name: str) -> ProcessInfo | None:
        try:
            raw = self._proxy().supervisor.getProcessInfo(name)
        except (OSError, xmlrpc.client.Error):
            return None
        return ProcessInfo(name, raw["statename"], raw["pid"], raw["start"], raw["description"])

    def all_info(self) -> dict[str, ProcessInfo]:
        try:
            raw = self._proxy().supervisor.getAllProcessInfo()
        except (OSError, xmlrpc.client.Error):
            return {}
        return {r["name"]: ProcessInfo(r["name"], r["statename"], r["pid"], r["start"], r["description"]) for r in raw}

    def start(self, name: str) -> None:
        try:
            self._proxy().supervisor.startProcess(name, False)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise ServiceError(f"supervisor could not start {name}: {fault.faultString}") from fault

    def stop(self, name: str) -> None:
        try:
            self._proxy().supervisor.stopProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString and "BAD_NAME" not in fault.faultString:
                raise ServiceError(f"supervisor could not stop {name}: {fault.faultString}") from fault

    def unresponsive_pid(self) -> int | None:
        """The pid of our supervisord when it is alive but does not answer on its socket (hung, or socket gone)."""
        pid = self.pid()
        if self.running() or not pid or not _alive(pid) or not _is_our_supervisord(pid, self.conf):
            return None
        return pid

    def terminate(self, pid: int, timeout: float = 30.0) -> None:
        """SIGTERM our own supervisord (it stops its programs as process groups and exits); SIGKILL past timeout."""
        os.kill(pid, signal.SIGTERM)
        poll_until(lambda: not _alive(pid), timeout, interval=0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.clean_stale()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every program (as process groups) and supervisord itself; wait for its pid to exit."""
        pid = self.pid()
        try:
            proxy = self._proxy()
            proxy.supervisor.stopAllProcesses(True)
            proxy.supervisor.shutdown()
        except (OSError, xmlrpc.client.Error):
            pass
        if pid:
            poll_until(lambda: not _alive(pid), timeout, interval=0.1)
        self.clean_stale()


def _alive(pid: int) -> bool:
    """True while pid runs; a zombie (exited, not yet reaped) is not alive."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.AccessDenied:
        return True


def _is_our_supervisord(pid: int, conf: Path) -> bool:
    """True when pid is a supervisord started with our config (guards against pid reuse after a reboot)."""
    try:
        cmdline = psutil.Process(pid).cmdline()
    except Exception:  # noqa: BLE001 - any failure means we cannot prove it is ours
        return False
    return any("supervisord" in part for part in cmdline) and str(conf) in cmdline
