#!/usr/bin/env python3
"""Print what the GPU collector reads (NVML) as JSON (`llmops gpu probe`)."""
from llmops.cli import run
from llmops.telemetry.gpuprobe import main

if __name__ == "__main__":
    run(main)
