"""`llmops gpu probe` (make gpu-probe): what the GPU collector reads (NVML) as JSON, and optionally its /metrics text."""
from __future__ import annotations

import argparse
import json
import sys

from prometheus_client import CollectorRegistry, generate_latest

from .gpu import GpuCollector, GpuReader


def main(argv: list[str] | None = None) -> int:
    """Read every GPU once; exit 0 whether or not a GPU is found (the status says which)."""
    parser = argparse.ArgumentParser(prog="llmops gpu probe", description=__doc__)
    parser.add_argument("--metrics", action="store_true", help="also print the /metrics text the dashboard exports")
    args = parser.parse_args(argv)
    reader = GpuReader()
    try:
        snapshot = reader.read()
        print(json.dumps({**snapshot.as_dict(), "nvml_errors": reader.errors}, indent=2))
        if args.metrics:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(GpuCollector(reader))
            sys.stdout.write(generate_latest(registry).decode())
    finally:
        reader.close()
    return 0 if snapshot.status != "error" else 1
