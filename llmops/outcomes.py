"""Outcome classes of a request, the one definition every counter uses (dashboard, request log, traffic generator).

A request is counted once, in exactly one class. The traffic generator, which checks answers, has one class
more (invalid output), and keeps its finer status as a detail beside the class (`classify_request`).
Timeouts are told apart from other 4xx because LiteLLM
answers a request whose backend call timed out with HTTP 408 (litellm.Timeout sets status_code 408, and
its prometheus callback records that as status_code="408", exception_class="<Provider>.Timeout"), and a
client that gives up waiting has no status code at all.
"""
from __future__ import annotations

OK, CLIENT_ERROR, RATE_LIMITED, SERVER_ERROR, TIMEOUT = "ok", "client_error", "rate_limited", "server_error", "timeout"
CLASSES = (OK, CLIENT_ERROR, RATE_LIMITED, SERVER_ERROR, TIMEOUT)
INVALID_OUTPUT = "invalid_output"  # the generator only: a 200 whose answer fails its JSON or schema check
GENERATOR_CLASSES = (*CLASSES, INVALID_OUTPUT)

# How each class reads in a sentence ("3 client errors") and on a chart legend.
LABELS = {
    OK: ("ok", "ok"),
    CLIENT_ERROR: ("client error", "client errors"),
    RATE_LIMITED: ("rate limited", "rate limited"),
    SERVER_ERROR: ("server error", "server errors"),
    TIMEOUT: ("timeout", "timeouts"),
    INVALID_OUTPUT: ("invalid output", "invalid outputs"),
}
LEGENDS = {OK: "ok (2xx)", CLIENT_ERROR: "client error (4xx)", RATE_LIMITED: "rate limited (429)",
           SERVER_ERROR: "server error (5xx)", TIMEOUT: "timeout", INVALID_OUTPUT: "invalid output"}

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


# The generator's details (a request's finer status) that have no HTTP status of their own, by class. A stream
# that broke or carried an error event after its 200, or a 200 that is not an answer, is the stack failing a
# request it accepted; a bug in the generator itself is the caller's mistake, a client error. The last three
# are the names runs kept before the outcome classes wrote for HTTP answers (their http_status decides).
DETAILS = {
    OK: OK, "timeout": TIMEOUT, "connection_error": SERVER_ERROR, "truncated_stream": SERVER_ERROR,
    "stream_error": SERVER_ERROR, "bad_response": SERVER_ERROR, "generator_error": CLIENT_ERROR,
    INVALID_OUTPUT: INVALID_OUTPUT,
    RATE_LIMITED: RATE_LIMITED, "http_4xx": CLIENT_ERROR, "http_5xx": SERVER_ERROR,
}


def http_detail(status: int) -> str:
    """The detail of a non-200 answer: 'http_503'."""
    return f"http_{status}"


def classify_request(detail: str, http_status: int | None = None) -> str:
    """The class of one generator request: its non-200 HTTP status decides (classify()), else its detail.

    Raises ValueError for a detail that is neither in DETAILS nor an http_NNN one.
    """
    if http_status is not None and http_status != 200:
        return classify(http_status)
    if detail in DETAILS:
        return DETAILS[detail]
    if detail.startswith("http_") and detail[5:].isdigit():
        return classify(int(detail[5:]))
    raise ValueError(f"{detail!r} is not a request detail the generator writes")


def empty_counts(classes: tuple[str, ...] = CLASSES) -> dict[str, int]:
    """{class: 0} for every class, in CLASSES order (or the order of the classes given)."""
    return {name: 0 for name in classes}


def describe(name: str, count: int) -> str:
    """'3 client errors', '1 timeout'."""
    singular, plural = LABELS[name]
    return f"{count} {singular if count == 1 else plural}"
