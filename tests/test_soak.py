"""`make soak`: concurrency 16 for 60 s through the real proxy while 50 clients poll /api/status."""
from __future__ import annotations

import json

import pytest

from tests.support import chaos
from tests.support.env import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.soak]
GROWTH_BOUND_MB = 150.0


def test_load_loses_nothing_and_the_dashboard_never_fails(ensure_stack_ready, tmp_path):
    outcome = chaos.run_load(ensure_stack_ready, tmp_path / "load.jsonl", seconds=60, concurrency=16, pollers=50,
                             growth_bound_mb=GROWTH_BOUND_MB)
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "soak.json").write_text(json.dumps(outcome.as_dict(), indent=2))
    print(json.dumps(outcome.as_dict(), indent=2))
    assert outcome.requests_sent > 0 and outcome.requests_accounted == outcome.requests_sent
    assert outcome.dashboard_errors == 0 and outcome.dashboard_polls > 1000
    assert all(mb <= GROWTH_BOUND_MB for mb in outcome.growth.values()), outcome.growth
    assert outcome.problems == []
