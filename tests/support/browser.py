"""A real headless Chromium (Debian's) driven by Playwright, and the dashboard served over a fake stack for it."""
from __future__ import annotations

import os
import threading

from llmops.dashboard import create_app
from llmops.telemetry.gpu import GpuReader
from tests.support.env import ROOT
from tests.support.fakes.dashboard import FakeHTTP, make_settings
from tests.support.fakes.gpu import FakeNVML

ARTIFACTS = ROOT / "test-artifacts"
CANVAS_INK = """sel => {
  const c = document.querySelector(sel);
  if (!c || !c.width) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
  return n;
}"""


def serve(routes: dict, gpus=(), settings=None):
    """Serve an app over a fake stack and fake GPUs with waitress on a free port; return (base_url, server)."""
    import waitress

    app = create_app({"SETTINGS": settings or make_settings(), "HTTP_SESSION": FakeHTTP(routes), "START_MONITOR": False,
                      "GPU_READER": GpuReader(FakeNVML(gpus=gpus)),
                      "SERVICE_PIDS": lambda: {"dashboard": os.getpid(), "litellm": None}})
    for _ in range(2):
        app.extensions["llmops"]["monitor"].run_once()
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    return f"http://127.0.0.1:{server.effective_port}", server


def open_page(browser, url: str, width: int = 1280, height: int = 900):
    """A page that records console errors and uncaught exceptions."""
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
    page.goto(url)
    return page, errors
