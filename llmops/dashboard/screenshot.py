"""Save a screenshot of the running dashboard with headless Chromium (`make screenshot` -> docs/dashboard.png)."""
from __future__ import annotations

import argparse
import os
import sys

from .. import settings

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
OUTPUT = settings.ROOT / "docs" / "dashboard.png"


def main(argv: list[str] | None = None) -> int:
    """Open the dashboard, wait for its charts to draw, write a full-page PNG and print its path; 2 without Chromium."""
    parser = argparse.ArgumentParser(prog="llmops dashboard screenshot", description=__doc__)
    parser.add_argument("--url", default=None, help="dashboard URL (default from settings)")
    parser.add_argument("--output", default=str(OUTPUT), help=f"default: {OUTPUT}")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--window", default=None, help="chart window to select (default: the page's own)")
    args = parser.parse_args(argv)
    if CHROMIUM is None:
        print("error: Chromium not found (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    url = args.url or settings.load().dashboard_url
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": args.width, "height": 900})
            page.goto(url, wait_until="networkidle")
            if args.window and page.input_value("#window") != args.window:
                with page.expect_response(lambda r: f"/api/charts?window={args.window}" in r.url):
                    page.select_option("#window", args.window)
            page.wait_for_function("document.querySelectorAll('canvas').length > 0", timeout=15000)
            page.wait_for_timeout(2500)  # the charts animate their first draw; a picture mid-animation looks broken
            page.screenshot(path=args.output, full_page=True)
        finally:
            browser.close()
    print(args.output)
    return 0
