"""`python -m tests.spawnprobe`: spawns a child with uvicorn's own multiprocessing context (how it starts
LITELLM_WORKERS > 1) and prints the name this main module was imported under in the child."""
from __future__ import annotations

import sys

from uvicorn._subprocess import spawn

IMPORTED_AS = __name__


def report(queue) -> None:
    queue.put(sys.modules["__mp_main__"].IMPORTED_AS)


if __name__ == "__main__":
    queue = spawn.Queue()
    child = spawn.Process(target=report, args=(queue,))
    child.start()
    print(f"child imported the main module as {queue.get(timeout=60)}")
    child.join(timeout=60)
