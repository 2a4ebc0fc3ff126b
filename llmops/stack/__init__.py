"""The stack's lifecycle: supervisor control, services, ports, `.env` and bootstrap."""
from ..proxy.key import redact
from .lifecycle import Health, Stack, probe, state_lock

__all__ = ["Health", "Stack", "probe", "redact", "state_lock"]
