"""The holder of a port: with listeners on several addresses, the one on the address asked about."""
from __future__ import annotations

import subprocess
import sys

from llmops.stack.ports import holder, port_open
from tests.support.helpers import free_port, wait_for

LISTEN = "import socket, sys, time; s = socket.socket(); s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(); time.sleep(120)"


def test_holder_names_the_listener_on_the_asked_address():
    port = free_port()
    children = {host: subprocess.Popen([sys.executable, "-c", LISTEN, host, str(port)])
                for host in ("127.0.0.2", "127.0.0.1")}
    try:
        for host in children:
            wait_for(lambda h=host: port_open(h, port), 10, f"a listener on {host}:{port}")
        for host, child in children.items():
            found = holder(port, host)
            assert found is not None and found.pid == child.pid, (host, found)
            assert "socket" in found.command
        assert holder(free_port(), "127.0.0.1") is None
    finally:
        for child in children.values():
            child.kill()
            child.wait()
