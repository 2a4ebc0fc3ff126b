"""The dashboard page in a real headless Chromium (Debian's), served by waitress in-process over a fake stack."""
from __future__ import annotations

import re

import pytest

from tests.support.browser import ARTIFACTS, CANVAS_INK, open_page, serve
from tests.support.fakes.dashboard import FIRING_ALERTS, PROM, healthy_stack, without
from tests.support.fakes.gpu import gpu

pytestmark = pytest.mark.browser

def test_page_shows_cards_a_drawn_chart_and_no_console_errors(browser):
    base, server = serve(healthy_stack(alerts=FIRING_ALERTS))
    try:
        page, errors = open_page(browser, base)
        page.wait_for_selector('.card[data-component="proxy"].healthy', timeout=10_000)
        assert page.locator(".card").count() == 8  # services and probes, Alertmanager and Redis among them
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


def test_queue_section_shows_waiting_and_waits_by_priority_busy_slots_and_refusals(browser):
    base, server = serve(healthy_stack())
    try:
        page, errors = open_page(browser, base)
        page.wait_for_selector("#queue-priorities tbody td:has-text('2.50 s')", timeout=10_000)
        rows = [r.inner_text().split("\t") for r in page.locator("#queue-priorities tbody tr").all()]
        assert rows == [["0", "0", "10", "4 ms", "20 ms"], ["9", "3", "40", "2.50 s", "6.00 s"]]
        assert page.locator("#queue-backends tbody tr").inner_text().split("\t") == [
            "http://127.0.0.1:11434", "smollm2:135m", "1 / 1", "12"]
        assert page.locator("#queue-rejected").inner_text() == "refused: full 0, timeout 2, client left 0"
        assert page.locator("#queue-unavailable").is_hidden()
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


def test_host_section_says_no_gpu_found_and_lists_stack_processes(browser):
    base, server = serve(healthy_stack())
    try:
        page, errors = open_page(browser, base)
        page.wait_for_selector("#gpus .nogpu", timeout=10_000)
        assert "no GPU found" in page.locator("#gpus").inner_text()
        assert re.search(r"\t\d+\.\d [MG]B", page.locator('#processes tr[data-service="dashboard"]').inner_text())
        assert "stopped" in page.locator('#processes tr[data-service="litellm"]').inner_text()
        assert "smollm2:135m" in page.locator("#vram").inner_text()
        summary = page.locator("#host-summary").inner_text()
        assert "42 % of 8 cores" in summary and "10.0 GB of 16.0 GB (63 %)" in summary
        assert "1.50 / 1.25 / 0.75" in summary and "60.0 GB of 100.0 GB" in summary
        assert errors == []
    finally:
        server.close()


def test_host_section_draws_each_gpu_with_a_memory_bar(browser):
    base, server = serve(healthy_stack(), gpus=[gpu(), gpu(name="NVIDIA L4", used=21 * 2**30, total=24 * 2**30)])
    try:
        page, errors = open_page(browser, base)
        page.wait_for_selector('#gpus [data-gpu="1"]', timeout=10_000)
        first = page.locator('#gpus [data-gpu="0"]').inner_text()
        assert "NVIDIA GeForce RTX 4090" in first and "2.0 GB of 24.0 GB" in first and "61 °C" in first
        assert "123 W of 450 W" in first and "37 %" in first
        bar = page.locator('#gpus [data-gpu="1"] .meter .fill').first
        assert bar.get_attribute("class") == "fill warn"  # 87.5 % used
        width = page.evaluate("""() => { const f = document.querySelector('[data-gpu="1"] .meter .fill');
                                         return f.getBoundingClientRect().width / f.parentElement.getBoundingClientRect().width; }""")
        assert abs(width - 0.875) < 0.02
        assert errors == []
    finally:
        server.close()


def test_phone_width_has_no_horizontal_scroll(browser):
    base, server = serve(healthy_stack(), gpus=[gpu()])
    try:
        page, errors = open_page(browser, base, width=390, height=844)
        page.wait_for_function(f"() => ({CANVAS_INK})('[data-chart=\"requests\"] canvas') > 200", timeout=10_000)
        page.wait_for_selector('#gpus [data-gpu="0"]', timeout=10_000)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
        assert errors == []
    finally:
        server.close()
