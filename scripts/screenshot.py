#!/usr/bin/env python3
"""Save a screenshot of the running dashboard to docs/dashboard.png (`llmops dashboard screenshot`)."""
from llmops.cli import run
from llmops.dashboard.screenshot import main

if __name__ == "__main__":
    run(main)
