"""The traffic generator through the real proxy and the embedded backend (real inference)."""
from __future__ import annotations

import json

import pytest

from llmops.traffic import TrafficConfig, run

pytestmark = pytest.mark.integration


def test_generator_through_the_real_proxy_counts_every_request(ensure_stack_ready, tmp_path):
    stack = ensure_stack_ready
    output, summary_file = tmp_path / "requests.jsonl", tmp_path / "summary.json"
    result = run(TrafficConfig(url=stack.settings.litellm_url, api_key=stack.key, max_requests=6, concurrency=2,
                               max_tokens=16, seed=7, output=output, summary_json=summary_file))
    assert result.exit_code == 0, result.verdict
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(lines) == 6 and sorted(line["id"] for line in lines) == list(range(1, 7))
    assert all(line["status"] == "ok" for line in lines), lines
    assert all(line["completion_tokens"] > 0 and line["ttft_s"] is not None for line in lines)
    summary = json.loads(summary_file.read_text())
    assert stack.key not in summary_file.read_text() and stack.key not in output.read_text()
    assert summary["requests"]["ok"] == 6
