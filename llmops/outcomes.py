"""Outcome classes of a request, the one definition every counter uses (dashboard, request log, traffic generator).

A request is counted once, in exactly one class. Timeouts are told apart from other 4xx because LiteLLM
answers a request whose backend call timed out with HTTP 408 (litellm.Timeout sets status_code 408, and
its prometheus callback records that as status_code="408", exception_class="<Provider>.Timeout"), and a
client that gives up waiting has no status code at all.
"""
from __future__ import annotations

OK, CLIENT_ERROR, RATE_LIMITED, SERVER_ERROR, TIMEOUT = "ok", "client_error", "rate_limited", "server_error", "timeout"
CLASSES = (OK, CLIENT_ERROR, RATE_LIMITED, SERVER_ERROR, TIMEOUT)

# How each class reads in a sentence ("3 client errors") and on a chart legend.
LABELS = {
    OK: ("ok", "ok"),
    CLIENT_ERROR: ("client error", "client errors"),
    RATE_LIMITED: ("rate limited", "rate limited"),
    SERVER_ERROR: ("server error", "server errors"),
    TIMEOUT: ("timeout", "timeouts"),
}
LEGENDS = {OK: "ok (2xx)", CLIENT_ERROR: "client error (4xx)", RATE_LIMITED: "rate limited (429)",
           SERVER_ERROR: "server error (5xx)", TIMEOUT: "timeout"}

# Classes that count against the stack's health (see docs/traffic-counting.md): a server error or a
# timeout is the stack failing a request it accepted; a client error is the caller's mistake and a 429
# is the configured limit doing its job, so both are shown but never turn the verdict red on their own.
FAILURES = (SERVER_ERROR, TIMEOUT)
TIMEOUT_STATUS = 408


def classify(status: int | str | None, timed_out: bool = False) -> str:
    """Class of one request from its HTTP status code; timed_out=True (or 408) is a timeout.

    A request that got no status at all (the connection failed) is a server error: the stack did not
    answer it. Raises ValueError for a status that is not an HTTP status code.
    """
    if timed_out:
        return TIMEOUT
    if status is None or status == "":
        return SERVER_ERROR
    try:
        code = int(status)
    except (TypeError, ValueError):
        raise ValueError(f"status {status!r} is not an HTTP status code") from None
    if not 100 <= code <= 599:
        raise ValueError(f"status {code} is not an HTTP status code (100-599)")
    if code == TIMEOUT_STATUS:
        return TIMEOUT
    if code == 429:
        return RATE_LIMITED
    if code < 400:
        # 1xx and 3xx never end a proxied completion; counting them as ok keeps every request in a class.
        return OK
    return CLIENT_ERROR if code < 500 else SERVER_ERROR


def empty_counts() -> dict[str, int]:
    """{class: 0} for every class, in CLASSES order."""
    return {name: 0 for name in CLASSES}


def describe(name: str, count: int) -> str:
    """'3 client errors', '1 timeout'."""
    singular, plural = LABELS[name]
    return f"{count} {singular if count == 1 else plural}"
