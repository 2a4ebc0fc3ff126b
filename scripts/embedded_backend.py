#!/usr/bin/env python3
"""Run the embedded Ollama-compatible backend until SIGTERM (`llmops backend serve`; what the supervisor runs)."""
from llmops.backend.serve import main
from llmops.cli import run

if __name__ == "__main__":
    run(main)
