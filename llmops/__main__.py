"""Entry point for `python -m llmops`."""
from .cli import main, run

run(main)
