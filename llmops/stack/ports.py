"""Who listens where: a quick connect test and the holder of a port (pid and command) where readable."""
from __future__ import annotations

import socket
from dataclasses import dataclass

import psutil


@dataclass
class Holder:
    """The process listening on a port, as far as the OS lets us see it."""

    pid: int | None
    command: str

    def describe(self) -> str:
        return f"pid {self.pid} ({self.command})" if self.pid else self.command


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it): for test and benchmark servers."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def holder(port: int, host: str | None = None) -> Holder | None:
    """The process that listens on this TCP port, or None when nobody does.

    Several processes can listen on one port at different addresses; the one on `host` is named first,
    then one on every address (it takes `host` too), then any other."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, PermissionError):
        return Holder(None, "a process this user cannot see (try as root: ss -ltnp)")
    listening = [c for c in connections if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port]
    if not listening:
        return None
    conn = min(listening, key=lambda c: 0 if c.laddr.ip == host else 1 if c.laddr.ip in ("0.0.0.0", "::") else 2)
    if conn.pid is None:
        return Holder(None, "a process this user cannot see")
    try:
        command = " ".join(psutil.Process(conn.pid).cmdline())[:120] or psutil.Process(conn.pid).name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        command = "unreadable command"
    return Holder(conn.pid, command)


def listeners(pids: set[int] | None = None) -> list[tuple[str, int, int | None]]:
    """Every TCP listener (address, port, pid), optionally only those of the given pids."""
    found = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and (pids is None or conn.pid in pids):
            found.append((conn.laddr.ip, conn.laddr.port, conn.pid))
    return found
