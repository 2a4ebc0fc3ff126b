"""The toolkit's own exception tree; lower-level errors are mapped to these at the boundary.

Each class carries the HTTP status the dashboard answers it with (`http_status`; its one error handler,
llmops/dashboard/app.py, reads it): a bad query parameter is the caller's 400, anything else the toolkit
raises on purpose is a part of the stack that cannot do what was asked, a 503. An exception outside this
tree reaching the dashboard is a bug: 500.
"""


class StackError(Exception):
    """Base of every error the toolkit raises on purpose."""

    http_status = 503


class ConfigError(StackError):
    """A setting, config file or flag is malformed; the message names the file and line."""


class PortInUseError(StackError):
    """A port the stack needs is held by a process that is not ours."""


class ServiceError(StackError):
    """A service failed to start or to become ready."""


class MetricsUnavailable(StackError):
    """Prometheus cannot be reached or did not answer a query; the message says why."""


class PreflightError(StackError):
    """The traffic generator's check before load: the proxy is unreachable, refuses the key, or does not list
    the model; one line says which."""


class BadInput(StackError, ValueError):
    """A request parameter the API cannot use: the caller's mistake. `param` names it when one is to blame."""

    http_status = 400

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class BadWindow(BadInput):
    """A chart window that is not one of the dashboard's windows."""


class BadModel(BadInput):
    """The chart filter names a model the stack does not know."""


class BadQuery(BadInput):
    """A request-log query parameter (filter, time, limit, cursor) the log cannot use; the message starts
    with the parameter's name."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}", param)


class Unauthorized(StackError):
    """A request without the token its endpoint needs (the alert webhook's ALERT_RECEIVER_TOKEN)."""

    http_status = 401


class Forbidden(StackError):
    """A state-changing request the page did not send (the CSRF guard of the silence action)."""

    http_status = 403
