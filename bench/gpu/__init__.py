"""Checks meant for a GPU machine (the `device` tool); `make bench` does not run them (docs/benchmarks.md)."""
