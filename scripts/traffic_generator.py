#!/usr/bin/env python3
"""Traffic generator entry point; see `--help` and llmops/traffic/cli.py (exit codes there)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmops.entry import run  # noqa: E402
from llmops.traffic.cli import main  # noqa: E402

if __name__ == "__main__":
    run(main)
