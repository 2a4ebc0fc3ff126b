"""The one way the tests serve an aiohttp app in a thread: its own event loop, 127.0.0.1, a port given or free.

The fakes (FakeOpenAI, FakeOllama) and the backend's unit tests (fakes.backend.ServerThread, which starts the
app as `llmops backend serve` does) all run on it.
"""
from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web

Serve = Callable[[web.Application], Awaitable[tuple[web.AppRunner, int]]]


async def serve(app: web.Application, port: int = 0, **runner_options) -> tuple[web.AppRunner, int]:
    """Serve app on 127.0.0.1:port (0: a free port) in the running loop; returns the runner and the bound port.

    The socket is reusable at once (a fake restarted on its port binds again) and sets TCP_NODELAY, as Go's
    servers (real Ollama) do: without it a small answer can wait ~40 ms for the client's delayed ACK.
    """
    runner = web.AppRunner(app, **{"access_log": None, **runner_options})
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    await web.SockSite(runner, sock).start()
    return runner, sock.getsockname()[1]


class ServerThread:
    """An aiohttp app served from its own event loop in a daemon thread; a context manager, or start()/stop().

    `serve_app` starts the app in the loop (default: serve() on `port` with `runner_options`); a failure to
    start is raised in the caller's thread. `before_stop`, a coroutine function, runs in the loop before the
    runner's cleanup (to release handlers that wait on purpose). run() runs a coroutine in the loop.
    """

    def __init__(self, app: web.Application, port: int = 0, name: str = "test-server",
                 serve_app: Serve | None = None, before_stop: Callable[[], Awaitable[None]] | None = None,
                 **runner_options) -> None:
        self.app, self.port, self.name = app, port, name
        self._serve = serve_app or (lambda a: serve(a, self.port, **runner_options))
        self._before_stop = before_stop
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._runner, self.port = self.loop.run_until_complete(self._serve(self.app))
        except BaseException as exc:  # noqa: BLE001 - raised again in the thread that started the server
            self.error = exc
            self._ready.set()
            self.loop.close()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError(f"{self.name} did not start within 10 s")
        if self.error is not None:
            raise self.error
        return self

    def run(self, coro: Awaitable, timeout: float = 15.0):
        """Run a coroutine in the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self._runner is not None and not self.loop.is_closed():
            if self._before_stop is not None:
                self.run(self._before_stop())
            self.run(self._runner.cleanup())
            self._runner = None
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(15)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
