"""Entry point for `python -m llmops`."""
import sys

from .cli import main

sys.exit(main())
