"""The Makefile: every target documented, `make help` the default."""
import re
import subprocess

from tests.support.env import ROOT

TARGET = re.compile(r"^([a-zA-Z0-9_-]+):(?!=)(.*)$")


def targets_without_description() -> list[str]:
    missing = []
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = TARGET.match(line)
        if match and not match.group(1).startswith(".") and "## " not in match.group(2):
            missing.append(match.group(1))
    return missing


def test_every_target_has_a_description():
    assert targets_without_description() == []


def test_help_is_the_default_and_lists_the_targets():
    out = subprocess.run(["make", "-s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for target in ("setup", "start", "stop", "restart", "status", "logs", "test", "lint", "bench", "clean",
                   "traffic-quick", "traffic", "load-test"):
        assert re.search(rf"^\s*(\x1b\[36m)?{re.escape(target)}\s", out, re.M), target
    for service in ("ollama", "litellm", "prometheus", "alertmanager", "dashboard"):
        for verb in ("start", "stop", "restart", "health", "logs"):
            assert f"{verb}-{service}" in out
