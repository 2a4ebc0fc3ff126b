"""The dashboard on :3001: the Flask app factory, its monitor, verdict, exporter and charts."""
from .app import create_app, main

__all__ = ["create_app", "main"]
