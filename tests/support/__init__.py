"""Test support: one way to run each real process (proxy, Prometheus, backend, a browser) and each fake.

processes.ManagedProcess runs a real process (proxy.proxy_process, proxy.prometheus_process, backend.BackendProcess);
serverthread.ServerThread serves an aiohttp app in a thread (the fakes in fakes/ and the backend's unit tests).

Tests and benchmarks import from here; shared fixtures live in tests/conftest.py. Nothing here is a test.
"""
