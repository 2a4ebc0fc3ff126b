"""`python -m tests.spawnprobe`: a main module that imports llmops.render.proxy_main, as the proxy's does, and
spawns a child the way uvicorn spawns its workers; prints whether automatic GC is on in the parent and the child."""
from __future__ import annotations

import gc
import multiprocessing

import llmops.render.proxy_main  # noqa: F401


def report(queue) -> None:
    queue.put(gc.isenabled())


if __name__ == "__main__":
    spawn = multiprocessing.get_context("spawn")
    queue = spawn.Queue()
    child = spawn.Process(target=report, args=(queue,))
    child.start()
    print(f"parent={gc.isenabled()} child={queue.get(timeout=60)}")
    child.join(timeout=60)
