"""The dashboard's "Requests" section in real headless Chromium, over a request-log file written by the real store."""
from __future__ import annotations

import json
import os
import threading
import time

import pytest

from llmops.dashboard import create_app
from llmops.requestlog import store
from tests.support.browser import open_page
from tests.support.fakes.dashboard import KEY, FakeHTTP, healthy_stack, make_settings

pytestmark = pytest.mark.browser


def fill(db, now: float) -> None:
    conn = store.connect(db)
    rows = []
    for i in range(60):
        failed = i % 10 == 3
        rows.append({"call_id": f"call-{i:02d}", "ts": now - 600 + i * 5, "kind": "chat", "model": "smollm2:135m",
                     "deployment": "http://127.0.0.1:11434", "outcome": "rate_limited" if failed else "ok",
                     "status": 429 if failed else 200, "latency_ms": 40.0 + i, "prompt_tokens": 9,
                     "completion_tokens": 4, "attempts": 1, "user_agent": "curl/8" if i % 2 else "llmops-traffic/1",
                     "key_hash": "litellm_proxy_master_key", "rank": 3,
                     "error_type": "RateLimitError" if failed else None,
                     "error_message": f"Deployment has all max_parallel_requests slots in use ({i})" if failed else None})
    rows.append({"call_id": "call-timeout", "ts": now - 1, "kind": "chat", "model": "smollm2:135m", "outcome": "timeout",
                 "status": 408, "attempts": 2, "user_agent": "curl/8", "rank": 2, "error_type": "Timeout",
                 "error_message": "litellm.Timeout: Connection timed out"})
    store.write_batch(conn, rows)
    conn.close()


LOGGED = {"kind": "chat", "model": "smollm2:135m", "outcome": "ok", "status": 200, "attempts": 1, "rank": 3}


def add(db, rows: list[dict], **common) -> None:
    """More rows in the log: each over LOGGED and `common`."""
    conn = store.connect(db)
    store.write_batch(conn, [{**LOGGED, **common, **r} for r in rows])
    conn.close()


def column_of(page, header: str):
    """call_id -> the text of that row's cell under `header`."""
    column = [h.strip() for h in page.locator("#requests thead th").all_inner_texts()].index(header)
    return lambda call_id: page.locator(f'#requests tbody tr[data-call-id="{call_id}"] td').nth(column).inner_text()


def serve(tmp_path, degraded: str | None = None):
    import waitress

    state = tmp_path / "state"
    (state / "requestlog").mkdir(parents=True)
    status = {"pid": 1, "written": 61, "dropped": 3 if degraded else 0, "queued": 0, "degraded": degraded,
              "updated": time.time()}
    (state / "requestlog" / "1.json").write_text(json.dumps(status))
    settings = make_settings(REQUEST_LOG_PATH=str(tmp_path / "requests.db"), LLMOPS_STATE_DIR=str(state))
    app = create_app({"SETTINGS": settings, "HTTP_SESSION": FakeHTTP(healthy_stack()), "START_MONITOR": False,
                      "SERVICE_PIDS": lambda: {"dashboard": os.getpid()}})
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    return f"http://127.0.0.1:{server.effective_port}", server


def test_requests_section_lists_filters_pages_and_shows_details_without_console_errors(browser, tmp_path):  # noqa: F811
    fill(tmp_path / "requests.db", time.time())
    base, server = serve(tmp_path)
    try:
        page, errors = open_page(browser, base)
        rows = page.locator("#requests tbody tr.row")
        rows.first.wait_for()
        assert rows.count() == 50
        assert rows.first.get_attribute("data-call-id") == "call-timeout", "newest first"
        assert page.locator("#requests-degraded").is_hidden()
        page.click("#requests-more")
        page.wait_for_function("document.querySelectorAll('#requests tbody tr.row').length === 61")
        page.check("#requests-filters input[name=failures]")
        page.wait_for_function("document.querySelectorAll('#requests tbody tr.row').length === 7")
        assert set(page.locator("#requests tbody tr.row td.oc").all_inner_texts()) == {"rate limited", "timeout"}
        page.fill("#requests-filters input[name=q]", "slots in use (43)")
        page.wait_for_function("document.querySelectorAll('#requests tbody tr.row').length === 1")
        page.click("#requests tbody tr.row")
        detail = page.locator("#request-detail")
        detail.wait_for()
        assert "call-43" in detail.inner_text() and "RateLimitError" in detail.inner_text()
        page.fill("#requests-filters input[name=q]", "")
        page.uncheck("#requests-filters input[name=failures]")
        page.select_option("#requests-filters select[name=user_agent]", "curl/8")
        page.wait_for_function("document.querySelectorAll('#requests tbody tr.row').length === 31")
        assert KEY not in page.content()
        assert errors == []
        page.close()
    finally:
        server.close()


def test_requests_section_says_the_log_is_degraded(browser, tmp_path):  # noqa: F811
    fill(tmp_path / "requests.db", time.time())
    base, server = serve(tmp_path, degraded="database is locked")
    try:
        page, errors = open_page(browser, base)
        banner = page.locator("#requests-degraded")
        banner.wait_for()
        assert banner.inner_text() == "request log degraded: database is locked (3 rows dropped)"
        assert page.locator("#requests tbody tr.row").count() == 50, "what was written stays readable"
        assert errors == []
        page.close()
    finally:
        server.close()


def test_requests_section_shows_tools_offered_and_calls_made_and_filters_on_them(browser, tmp_path):  # noqa: F811
    now = time.time()
    fill(tmp_path / "requests.db", now)
    add(tmp_path / "requests.db", [
        {"call_id": "tools-called", "ts": now + 1, "tools": 3, "tool_calls": 2, "finish_reason": "tool_calls"},
        {"call_id": "tools-text", "ts": now + 2, "tools": 1, "tool_calls": 0, "finish_reason": "stop"},
        {"call_id": "tools-refused", "ts": now + 3, "tools": 2, "outcome": "client_error", "status": 400,
         "error_type": "BadRequestError", "error_message": "gemma3:270m does not support tools"},
    ], user_agent="OpenAI/Python 2")
    base_url, server = serve(tmp_path)
    try:
        page, errors = open_page(browser, base_url)
        rows = page.locator("#requests tbody tr.row")
        rows.first.wait_for()
        cell = column_of(page, "tools")
        assert cell("tools-called") == "3 tools → 2 calls"
        assert cell("tools-text") == "1 tool → 0 calls"
        assert cell("tools-refused") == "2 tools", "no calls are known of a refused request"
        assert cell("call-59") == "", "a request without tools"
        page.check("#requests-filters input[name=tools]")
        page.wait_for_function("document.querySelectorAll('#requests tbody tr.row').length === 3")
        assert [rows.nth(i).get_attribute("data-call-id") for i in range(3)] == [
            "tools-refused", "tools-text", "tools-called"]
        page.click('#requests tbody tr[data-call-id="tools-called"]')
        detail = page.locator("#request-detail")
        detail.wait_for()
        text = detail.inner_text()
        assert "tools offered\n3" in text and "tool calls made\n2" in text, text
        page.uncheck("#requests-filters input[name=tools]")
        page.wait_for_function("document.querySelectorAll('#requests tbody tr.row').length === 50")
        assert errors == []
        page.close()
    finally:
        server.close()


def test_requests_section_shows_the_queue_priority_and_filters_on_it(browser, tmp_path):  # noqa: F811
    now = time.time()
    fill(tmp_path / "requests.db", now)  # 61 rows the queue did not hold (no priority)
    add(tmp_path / "requests.db", [
        {"call_id": "urgent", "ts": now + 1, "priority": 0, "queue_wait_ms": 2.5},
        {"call_id": "bulk-1", "ts": now + 2, "priority": 9, "queue_wait_ms": 640.0},
        {"call_id": "bulk-2", "ts": now + 3, "priority": 9, "queue_wait_ms": 60000.0, "outcome": "rate_limited",
         "status": 429, "error_type": "RateLimitError", "error_message": "queued 60 s, backend busy"},
    ], user_agent="llmops-traffic/0.1")
    base_url, server = serve(tmp_path)
    try:
        page, errors = open_page(browser, base_url)
        rows = page.locator("#requests tbody tr.row")
        rows.first.wait_for()
        cell = column_of(page, "priority")
        assert [cell("urgent"), cell("bulk-2"), cell("call-59")] == ["0", "9", ""]
        menu = page.locator("#requests-filters select[name=priority] option")
        page.wait_for_function("document.querySelectorAll('#requests-filters select[name=priority] option').length === 3")
        assert menu.all_inner_texts() == ["all", "0", "9"]
        page.select_option("#requests-filters select[name=priority]", "9")
        page.wait_for_function("document.querySelectorAll('#requests tbody tr.row').length === 2")
        assert [rows.nth(i).get_attribute("data-call-id") for i in range(2)] == ["bulk-2", "bulk-1"]
        page.select_option("#requests-filters select[name=priority]", "0")
        page.wait_for_function("document.querySelectorAll('#requests tbody tr.row').length === 1")
        page.click('#requests tbody tr[data-call-id="urgent"]')
        detail = page.locator("#request-detail")
        detail.wait_for()
        text = detail.inner_text()
        assert "queue priority\n0" in text and "queue wait (ms)\n2.5" in text, text
        page.select_option("#requests-filters select[name=priority]", "")
        page.wait_for_function("document.querySelectorAll('#requests tbody tr.row').length === 50")
        assert errors == []
        page.close()
    finally:
        server.close()
