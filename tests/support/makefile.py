"""What the Makefile offers, read from make itself: the targets, their `make help` lines, the services.

The per-service targets come from one `$(call service,...)` line a service, so no line of the Makefile names
them; the tests read them from make (its rule database and `make help`), never from the Makefile's text.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.env import ROOT

ANSI = re.compile(r"\x1b\[[0-9;]*m")
HELP_LINE = re.compile(r"^\s+(\S+)\s+(.*)$")
VERBS = ("start", "stop", "restart", "health", "logs")


def _make(root: Path, *args: str) -> str:
    return subprocess.run(["make", "--no-print-directory", "-s", *args], cwd=root, capture_output=True,
                          text=True, check=True).stdout


def help_entries(root: Path = ROOT) -> dict[str, str]:
    """Target -> description, as `make help` prints them (colours taken out)."""
    text = ANSI.sub("", _make(root, "help"))
    entries = {}
    for line in text.splitlines():
        match = HELP_LINE.match(line)
        if match:
            entries[match.group(1)] = match.group(2).strip()
    return entries


def services(root: Path = ROOT) -> list[str]:
    """The Makefile's SERVICES, in its order (one `$(call service,...)` line each)."""
    return _make(root, "--eval", "_print-services: ; @echo $(SERVICES)", "_print-services").split()


def recipe(target: str, root: Path = ROOT) -> str:
    """The commands `make TARGET` would run (make -n: printed, not run)."""
    return _make(root, "-n", target)


def targets(root: Path = ROOT) -> set[str]:
    """Every target make knows that a user can name: its rule database less special targets and files."""
    database = subprocess.run(["make", "--no-print-directory", "-pRrq", ":"], cwd=root, capture_output=True,
                              text=True).stdout
    found, not_a_target = set(), False
    for line in database.splitlines():
        if line.startswith("# Not a target:"):
            not_a_target = True
            continue
        match = re.match(r"^([a-zA-Z0-9_.\-/]+):(?!=)", line)
        if match and not not_a_target and not match.group(1).startswith(".") and "/" not in match.group(1):
            found.add(match.group(1))
        not_a_target = False
    return found
