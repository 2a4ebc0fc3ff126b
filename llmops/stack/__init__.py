"""The stack's lifecycle: supervisor control, services, ports, `.env` and bootstrap."""
from .lifecycle import Health, Stack, probe, redact, state_lock

__all__ = ["Health", "Stack", "probe", "redact", "state_lock"]
