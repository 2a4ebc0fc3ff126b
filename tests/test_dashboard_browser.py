"""The dashboard page in a real headless Chromium (Debian's), served by waitress in-process over a fake stack."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from dashboard import create_app
from tests.fakes_dashboard import FIRING_ALERTS, PROM, FakeHTTP, healthy_stack, make_settings, without

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
CANVAS_INK = """sel => {
  const c = document.querySelector(sel);
  if (!c || !c.width) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
  return n;
}"""


def serve(routes: dict):
    """Serve an app over a fake stack with waitress on a free port; return (base_url, server)."""
    import waitress

    app = create_app({"SETTINGS": make_settings(), "HTTP_SESSION": FakeHTTP(routes), "START_MONITOR": False})
    for _ in range(2):
        app.extensions["llmops"]["monitor"].run_once()
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    return f"http://127.0.0.1:{server.effective_port}", server


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield instance
        instance.close()


def open_page(browser, url: str, width: int = 1280, height: int = 900):
    """A page that records console errors and uncaught exceptions."""
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
    page.goto(url)
    return page, errors


def test_page_shows_cards_a_drawn_chart_and_no_console_errors(browser):
    base, server = serve(healthy_stack(alerts=FIRING_ALERTS))
    try:
        page, errors = open_page(browser, base)
        page.wait_for_selector('.card[data-component="proxy"].healthy', timeout=10_000)
        assert page.locator(".card").count() == 6
        assert page.locator("#overall-word").text_content() == "healthy"
        page.wait_for_function(f"() => ({CANVAS_INK})('[data-chart=\"requests\"] canvas') > 500", timeout=10_000)
        assert page.locator("[data-chart] canvas").count() == 6
        page.wait_for_selector("#alerts .alert", timeout=10_000)
        assert "BackendDown" in page.locator("#alerts").inner_text()
        page.wait_for_selector("#models tbody td:has-text('smollm2:135m')", timeout=10_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        assert errors == []
    finally:
        server.close()


def test_window_choice_redraws_charts(browser):
    base, server = serve(healthy_stack())
    try:
        page, errors = open_page(browser, base)
        page.wait_for_function(f"() => ({CANVAS_INK})('[data-chart=\"latency\"] canvas') > 500", timeout=10_000)
        with page.expect_response(lambda r: "/api/charts?window=24h" in r.url):
            page.select_option("#window", "24h")
        assert errors == []
    finally:
        server.close()


def test_prometheus_down_says_metrics_unavailable_instead_of_empty_charts(browser):
    base, server = serve(without(healthy_stack(), PROM))
    try:
        page, errors = open_page(browser, base)
        page.wait_for_selector("#charts-unavailable:not([hidden])", timeout=10_000)
        assert "metrics unavailable" in page.locator("#charts-unavailable").inner_text()
        assert page.locator("[data-chart] canvas").count() == 0
        page.wait_for_selector('.card[data-component="proxy"].healthy', timeout=10_000)
        assert errors == []
    finally:
        server.close()


def test_phone_width_has_no_horizontal_scroll(browser):
    base, server = serve(healthy_stack())
    try:
        page, errors = open_page(browser, base, width=390, height=844)
        page.wait_for_function(f"() => ({CANVAS_INK})('[data-chart=\"requests\"] canvas') > 200", timeout=10_000)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
        assert errors == []
    finally:
        server.close()
