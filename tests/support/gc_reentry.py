"""python/cpython#148891 on purpose (fault injection for tests/test_proxy_launch.py): a finalizer that sets a
ContextVar while a collection runs inside another ContextVar.set. CPython 3.10/3.11 then free the HAMT the outer
set is still walking and die within a second: with SIGSEGV on a release build, with SIGABRT at a failed assertion
(e.g. "PyObject_GC_Track: object already tracked") where CPython was built with its assertions on.

Usage: python tests/support/gc_reentry.py [--collector] [ROUNDS]; --collector installs llmops.proxy.launch's collector
first, as the proxy's process does. Prints "survived" and exits 0 when no crash happened.
"""
from __future__ import annotations

import contextvars
import gc
import sys
import weakref


class Node:
    pass


def main(rounds: int) -> None:
    var = contextvars.ContextVar("reentered")
    pads = [contextvars.ContextVar(f"pad{i}") for i in range(40)]  # a HAMT deep enough to allocate nodes
    refs: list[weakref.ref] = []

    def finalizer(ref: weakref.ref) -> None:
        var.set(object())  # re-enters contextvar_set of this context from inside the collection

    for v in pads:
        v.set(object())
    for i in range(rounds):
        node = Node()
        node.cycle = node  # only the cyclic collector frees it, and runs the weakref callback then
        refs.append(weakref.ref(node, finalizer))
        del node
        pads[i % len(pads)].set(object())
        if len(refs) > 10_000:
            refs = [r for r in refs if r() is not None]


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--collector" in args:
        args.remove("--collector")
        from llmops.proxy import launch as proxy_main

        proxy_main.install()
    if gc.isenabled():  # automatic collection (without the collector): one at nearly every allocation
        gc.set_threshold(1, 1, 1)
    contextvars.copy_context().run(main, int(args[0]) if args else 300_000)
    print("survived")
