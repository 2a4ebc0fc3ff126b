#!/usr/bin/env python3
"""Traffic generator entry point; see `--help` and llmops/traffic/cli.py (exit codes there)."""

from llmops.cli import run
from llmops.traffic.cli import main

if __name__ == "__main__":
    run(main)
