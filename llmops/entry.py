"""Running a command-line entry point: an exit status, and a quiet exit when stdout's reader goes away."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable


def run(main: Callable[[], int | None]) -> None:
    """sys.exit(main()), except that a closed stdout (`... | head -1`) ends the program without a traceback.

    This is the recipe of Python's signal module docs ("Note on SIGPIPE"): point stdout at devnull so the
    interpreter's final flush cannot fail again, and exit 1.
    """
    try:
        code = main()
        sys.stdout.flush()  # inside the try: a pipe closed early fails here, not at interpreter exit
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    sys.exit(code)
