"""The toolkit's own exception tree; lower-level errors are mapped to these at the boundary."""


class StackError(Exception):
    """Base of every error the toolkit raises on purpose."""


class ConfigError(StackError):
    """A setting, config file or flag is malformed; the message names the file and line."""


class PortInUseError(StackError):
    """A port the stack needs is held by a process that is not ours."""


class ServiceError(StackError):
    """A service failed to start or to become ready."""


class MetricsUnavailable(StackError):
    """Prometheus cannot be reached or did not answer a query; the message says why."""
