"""The dashboard's Queue section from Prometheus's answers (a fake Prometheus), and /api/queue's bad input."""
from __future__ import annotations

from llmops.dashboard import queueview
from llmops.dashboard.promapi import MetricsUnavailable, Sample
from tests.support.fakes.prom import FakeProm

Q = queueview.queries(3600)


def test_the_queue_section_reads_waiting_waits_slots_and_refusals():
    prom = FakeProm({
        Q["waiting"]: [Sample({"priority": "9"}, 4.0), Sample({"priority": "0"}, 0.0)],
        Q["admitted"]: [Sample({"priority": "9"}, 120.0), Sample({"priority": "0"}, 30.0)],
        Q["p50_s"]: [Sample({"priority": "9"}, 2.5), Sample({"priority": "0"}, 0.004)],
        Q["p95_s"]: [Sample({"priority": "9"}, 6.0), Sample({"priority": "0"}, None)],
        Q["busy"]: [Sample({"backend": "http://127.0.0.1:11434", "model": "smollm2:135m"}, 1.0)],
        Q["slots"]: [Sample({"backend": "http://127.0.0.1:11434", "model": "smollm2:135m"}, 1.0)],
        Q["rejected"]: [Sample({"reason": "timeout"}, 3.0)],
        Q["health_checks"]: [Sample({"backend": "http://127.0.0.1:11434", "model": "smollm2:135m"}, 12.0),
                             Sample({"backend": "http://10.0.0.9:11434", "model": "smollm2:135m"}, 5.0)],
    }, strict=True)
    doc = queueview.queue(prom, "1h", 3600)
    assert doc["enabled"] and doc["available"]
    assert [p["priority"] for p in doc["priorities"]] == [0, 9]  # most urgent first
    assert doc["priorities"][1] == {"priority": 9, "waiting": 4, "admitted": 120, "p50_s": 2.5, "p95_s": 6.0}
    assert doc["priorities"][0]["p95_s"] is None
    # LiteLLM's health checks go around the queue: counted beside the slots of the backends the queue knows.
    assert doc["backends"] == [{"backend": "http://127.0.0.1:11434", "model": "smollm2:135m", "busy": 1, "slots": 1,
                                "health_checks": 12}]
    assert doc["rejected"] == {"full": 0, "timeout": 3, "client_left": 0}


def test_no_queue_series_says_the_queue_is_off_or_idle_and_prometheus_down_says_unavailable():
    idle = queueview.queue(FakeProm({}), "1h", 3600)
    assert not idle["enabled"] and "QUEUE_ENABLED=false" in idle["detail"] and idle["priorities"] == []
    down = queueview.queue(FakeProm(error=MetricsUnavailable("Prometheus unreachable")), "1h", 3600)
    assert not down["available"] and "unreachable" in down["detail"]


def test_the_gauges_are_maxed_over_the_proxys_series_not_summed():
    assert Q["busy"].startswith("max by (backend, model)") and "max by (model, priority)" in Q["waiting"]
