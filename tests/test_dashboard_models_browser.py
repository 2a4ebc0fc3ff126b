"""The per-model table and the charts' model filter in a real headless Chromium, over a fake stack."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.browser import open_page, serve
from tests.support.fakes.dashboard import BACKEND, FakeResponse, backend_routes, healthy_stack

pytestmark = pytest.mark.browser


def routes_with_expiry(seconds: float) -> dict:
    """A healthy stack whose backend has smollm2 loaded until `seconds` from now, and qwen3 present but unrouted."""
    routes = {**healthy_stack(), **backend_routes(models=("smollm2:135m", "qwen3:0.6b"))}
    expires = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
    routes[f"GET {BACKEND}/api/ps"] = FakeResponse(200, {"models": [
        {"name": "smollm2:135m", "model": "smollm2:135m", "size": 210000000, "size_vram": 0, "expires_at": expires}]})
    return routes


def test_model_rows_count_down_the_keep_alive_and_name_the_unrouted_model(browser):  # noqa: F811
    base, server = serve(routes_with_expiry(300))
    try:
        page, errors = open_page(browser, base)
        page.wait_for_selector("#models tr[data-model='smollm2:135m'] [data-expires]", timeout=10_000)
        assert page.locator("#models thead th").count() == 11
        cell = page.locator("#models tr[data-model='smollm2:135m'] [data-expires]")
        first = cell.text_content()
        assert first.startswith("unloads in 4:") or first.startswith("unloads in 5:"), first
        # The countdown moves by itself between table refreshes.
        page.wait_for_function(
            "t => document.querySelector(\"#models tr[data-model='smollm2:135m'] [data-expires]\").textContent !== t",
            arg=first, timeout=5_000)
        unrouted = page.locator("#models tr[data-model='qwen3:0.6b']")
        assert "present on the backend, not routed by the proxy" in unrouted.inner_text()
        kinds = {name: page.locator(f"#models tr[data-model='{name}'] td").nth(1).text_content()
                 for name in ("smollm2:135m", "all-minilm:22m")}
        assert kinds == {"smollm2:135m": "chat", "all-minilm:22m": "embedding"}
        assert errors == []
    finally:
        server.close()


def test_choosing_a_model_redraws_the_charts_for_it(browser):  # noqa: F811
    base, server = serve(routes_with_expiry(60))
    try:
        page, errors = open_page(browser, base)
        page.wait_for_selector("#chart-model option[value='smollm2:135m']", state="attached", timeout=10_000)
        assert page.locator("#chart-model").input_value() == "all"
        with page.expect_response(lambda r: "/api/charts?" in r.url and "model=smollm2%3A135m" in r.url) as info:
            page.select_option("#chart-model", "smollm2:135m")
        assert info.value.json()["model"] == "smollm2:135m"
        page.wait_for_selector("[data-chart='requests']", timeout=10_000)
        assert errors == []
    finally:
        server.close()
