"""`llmops dashboard screenshot` (`make screenshot`): a real headless Chromium saves the page once its charts drew."""
from __future__ import annotations

import subprocess
import sys

import pytest

from llmops.dashboard import screenshot
from tests.support.browser import serve
from tests.support.env import ROOT
from tests.support.fakes.dashboard import healthy_stack

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.browser
def test_screenshot_writes_a_full_page_png_of_the_dashboard_with_the_window_chosen(tmp_path):
    if screenshot.CHROMIUM is None:
        pytest.fail("Debian's chromium is not installed: `make test` installs it (apt-get install chromium)")
    base, server = serve(healthy_stack())
    out = tmp_path / "dashboard.png"
    try:
        # Its own process: Playwright's sync API cannot start twice in one thread (the browser fixture's may be open).
        done = subprocess.run([sys.executable, "-m", "llmops", "dashboard", "screenshot", "--url", base,
                               "--output", str(out), "--window", "24h"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    data = out.read_bytes()
    assert data[:8] == PNG
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width == 1280 and height > 900  # full page: taller than the viewport


def test_screenshot_without_chromium_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setattr(screenshot, "CHROMIUM", None)
    assert screenshot.main(["--url", "http://127.0.0.1:9"]) == 2
    assert "apt-get install chromium" in capsys.readouterr().err
