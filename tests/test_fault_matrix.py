"""The fault matrix against the real stack: SIGKILL, SIGSTOP/SIGCONT and a taken port, for each service."""
from __future__ import annotations

import json

import pytest

from tests.support import chaos
from tests.support.env import ROOT

pytestmark = pytest.mark.integration
SERVICES = ("ollama", "litellm", "prometheus", "alertmanager", "dashboard")
RESULTS = ROOT / "test-artifacts" / "fault_matrix.json"


@pytest.fixture(scope="module")
def runner(stack):
    return chaos.FaultRunner(stack, detect_within=10.0, out=print)


@pytest.fixture(scope="module")
def outcomes():
    collected: list[dict] = []
    yield collected
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(collected, indent=2))


@pytest.mark.parametrize("fault", chaos.FAULTS)
@pytest.mark.parametrize("service", SERVICES)
def test_fault_is_shown_and_survived(ensure_stack_ready, runner, outcomes, service, fault):
    outcome = runner.run(service, fault)
    outcomes.append(outcome.as_dict())
    assert outcome.ok, outcome.as_dict()
    assert outcome.detected_s is not None and outcome.detected_s <= 10.0
    if fault == "sigkill":
        assert outcome.restarted_by_supervisor
    if fault == "port_taken":
        assert "Nothing was killed" in outcome.clear_error


def test_stop_after_the_faults_leaves_no_process_and_no_listener(ensure_stack_ready):
    stack = ensure_stack_ready
    pids = [p.pid for p in chaos.stack_processes(stack)]
    assert len(pids) >= 5  # supervisord and its services
    ports = [s.port for s in stack.services() if s.kind == "supervised"]
    stack.stop()
    assert chaos.leftovers(pids, ports) == []
