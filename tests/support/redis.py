"""A real redis-server (Debian's), started by a test on a free port: bound to 127.0.0.1, no persistence."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.helpers import free_port, wait_for


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def real_redis(tmp: Path):
    """redis-server on a free port; yields its URL (redis://127.0.0.1:PORT/0) and stops it afterwards."""
    binary = shutil.which("redis-server")
    if not binary:
        pytest.fail("redis-server not found (apt-get install redis-server: `make setup` installs it)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp)], stdout=open(tmp / "redis.log", "w"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _pong(port), 15, "redis-server to answer PING", proc=proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        proc.wait(timeout=15)
