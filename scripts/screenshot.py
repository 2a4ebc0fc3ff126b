"""Save a screenshot of the running dashboard (headless Chromium): `make screenshot` -> docs/dashboard.png."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from llmops import settings
from llmops.cli import run

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=None, help="dashboard URL (default from settings)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "dashboard.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--window", default="15m", help="chart window to select")
    args = parser.parse_args()
    if CHROMIUM is None:
        print("error: Chromium not found (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    url = args.url or settings.load().dashboard_url
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": args.width, "height": 900})
        page.goto(url, wait_until="networkidle")
        page.wait_for_function("document.querySelectorAll('canvas').length > 0", timeout=15000)
        page.wait_for_timeout(2500)  # let the charts finish their first draw
        page.screenshot(path=args.output, full_page=True)
        browser.close()
    print(args.output)
    return 0


if __name__ == "__main__":
    run(main)
