"""The request log's view of the one outcome classifier (llmops/outcomes.py): a row also knows its error type."""
from __future__ import annotations

from ..outcomes import CLASSES, CLIENT_ERROR, OK, RATE_LIMITED, SERVER_ERROR, TIMEOUT
from ..outcomes import classify as classify_status

__all__ = ["CLASSES", "CLIENT_ERROR", "OK", "RATE_LIMITED", "SERVER_ERROR", "TIMEOUT", "classify"]


def classify(status: int | None, error_type: str | None = None) -> str:
    """The dashboard's class for a finished request; a timeout error (litellm.Timeout) is a timeout whatever
    status it carried, and a row with neither status nor error is a success the callback saw."""
    if status is None and not error_type:
        return OK
    return classify_status(status, timed_out=bool(error_type and "timeout" in error_type.lower()))
