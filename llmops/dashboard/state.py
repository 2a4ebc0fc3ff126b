"""What create_app built, as the Blueprints read it: monitor, settings, prometheus, caches, clock."""
from __future__ import annotations

from flask import current_app


def app_state() -> dict:
    """app.extensions["llmops"] of the app serving the request."""
    return current_app.extensions["llmops"]
