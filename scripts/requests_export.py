#!/usr/bin/env python3
"""Write the proxy's request log as JSON Lines (`llmops requests export`)."""
from llmops.cli import run
from llmops.requestlog.export import main

if __name__ == "__main__":
    run(main)
