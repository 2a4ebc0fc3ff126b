"""Small helpers shared by the integration tests: waiting on a condition, free ports, a JSON answer."""
from __future__ import annotations

import json
import socket
from http.server import BaseHTTPRequestHandler

from llmops.polling import poll_until


def wait_for(condition, timeout: float, what: str, poll: float = 0.2):
    """Return condition()'s first truthy value; fail the test after `timeout` seconds."""
    last = poll_until(condition, timeout, interval=poll)
    if last:
        return last
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def send_json(handler: BaseHTTPRequestHandler, payload: object, status: int = 200) -> None:
    """Answer an http.server request with a JSON body."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
