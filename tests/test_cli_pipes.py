"""Every command-line entry point piped into a reader that closes early (`| head -1`) ends without a traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.env import ROOT, test_environ

PY = sys.executable


def closed_reader(argv: list[str]) -> subprocess.CompletedProcess:
    """Run argv with stdout a pipe whose read end is already closed: every write to it fails (EPIPE)."""
    read, write = os.pipe()
    os.close(read)
    try:
        # Python ignores SIGPIPE, so the write raises BrokenPipeError, as when `head` has exited.
        result = subprocess.run(argv, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120, cwd=ROOT,
                                env={**test_environ(), "LLMOPS_STATE_DIR": ".run-test/pipes-state"})
    finally:
        os.close(write)
    return result


@pytest.mark.parametrize("argv", [
    [PY, "-m", "llmops", "status"],
    [PY, "-m", "llmops", "status", "--json"],
    [PY, "-m", "llmops", "--help"],
    [PY, "scripts/traffic_generator.py", "--help"],
    [PY, "scripts/gpu_probe.py", "--metrics"],
    [PY, "-m", "llmops", "gpu", "probe", "--metrics"],
], ids=lambda argv: " ".join(argv[1:]))
def test_a_closed_stdout_ends_the_command_without_a_traceback(argv):
    result = closed_reader(argv)
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
    # 1 is Python's documented convention for an EPIPE on stdout; argparse's --help swallows the error itself.
    assert result.returncode in (0, 1), result.returncode
    assert result.returncode == 1 or "--help" in argv


def test_head_reads_the_first_line_of_status_and_nothing_breaks():
    result = subprocess.run(f"{PY} -m llmops status | head -1", shell=True, capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env={**test_environ(), "LLMOPS_STATE_DIR": ".run-test/pipes-state"})
    assert result.stdout.startswith("SERVICE") and result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr, result.stderr


def test_a_traffic_run_into_a_closed_stdout_ends_without_a_traceback():
    from tests.support.fakes.traffic import KEY, FakeOpenAI

    with FakeOpenAI([{"tokens": 3}]) as fake:
        result = closed_reader([PY, "scripts/traffic_generator.py", "--url", fake.url, "--api-key", KEY, "--max", "3"])
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
    assert result.returncode == 1
