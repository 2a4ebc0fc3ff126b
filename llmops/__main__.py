"""Entry point for `python -m llmops`."""
from .cli import main
from .entry import run

run(main)
