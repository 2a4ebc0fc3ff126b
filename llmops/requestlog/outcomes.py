"""Outcome classes of a request, by HTTP status (the dashboard's classes).

TODO at merge: the dashboard's own classifier (llmops/outcomes.py, issue in parallel) should be the one
place; this module then re-exports it.
"""
from __future__ import annotations

OK, CLIENT_ERROR, RATE_LIMITED, SERVER_ERROR, TIMEOUT = "ok", "client_error", "rate_limited", "server_error", "timeout"
CLASSES = (OK, CLIENT_ERROR, RATE_LIMITED, SERVER_ERROR, TIMEOUT)
# LiteLLM answers a backend that took longer than request_timeout with 408 (litellm.Timeout); a gateway
# timeout (504) is the same thing seen from another hop.
TIMEOUT_STATUSES = (408, 504)


def classify(status: int | None, error_type: str | None = None) -> str:
    """One class for a finished request: ok (2xx), timeout, rate_limited (429), client_error (4xx), server_error."""
    if error_type and "timeout" in error_type.lower():
        return TIMEOUT
    if status is None:
        return SERVER_ERROR if error_type else OK
    if 200 <= status < 400:
        return OK
    if status in TIMEOUT_STATUSES:
        return TIMEOUT
    if status == 429:
        return RATE_LIMITED
    if 400 <= status < 500:
        return CLIENT_ERROR
    return SERVER_ERROR
