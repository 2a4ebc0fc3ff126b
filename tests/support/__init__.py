"""Test support: one way to run each real process (proxy, Prometheus, backend, a browser) and each fake.

Tests and benchmarks import from here; shared fixtures live in tests/conftest.py. Nothing here is a test.
"""
