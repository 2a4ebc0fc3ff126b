"""Percentiles, the recorder's counts, error ratio, goodput and the sweep's knee."""
import pytest

from llmops.traffic import client
from llmops.traffic.client import RequestResult
from llmops.traffic.stats import Recorder, distribution, percentile
from llmops.traffic.sweep import knee


def test_percentile_interpolates_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(list(range(101)), 99) == 99
    assert percentile([5.0], 90) == 5.0
    assert percentile([], 50) is None


def test_distribution_of_empty_sample_is_none():
    d = distribution([])
    assert d["count"] == 0 and d["p50"] is None and d["max"] is None


def ok(i, latency, ttft=None, tokens=10, itl=()):
    return RequestResult(id=i, detail=client.OK, start_s=float(i), latency_s=latency, ttft_s=ttft,
                         completion_tokens=tokens, prompt_tokens=5, tokens_source="usage", itl_s=list(itl))


def feed(rec, results):
    for r in results:
        rec.started(r.start_s)
        rec.add(r)


def test_recorder_counts_each_class_and_leaves_429_and_cancelled_out_of_the_error_ratio():
    rec = Recorder()
    feed(rec, [ok(0, 1.0), ok(1, 1.0),
               RequestResult(id=2, detail="http_429", http_status=429, start_s=2.0, latency_s=0.01),
               RequestResult(id=3, detail="http_503", http_status=503, start_s=3.0, latency_s=0.01),
               RequestResult(id=4, detail=client.TIMEOUT, start_s=4.0),
               RequestResult(id=5, detail=client.CANCELLED, start_s=5.0),
               RequestResult(id=6, detail="http_408", http_status=408, start_s=6.0, latency_s=0.01),
               RequestResult(id=7, detail=client.GENERATOR_ERROR, start_s=7.0)])
    s = rec.summary()
    # The cancelled request is reported beside the counts, never inside them.
    assert s["requests"] == {"total": 7, "ok": 2, "failed": 5, "timed_out": 2, "rate_limited": 1, "cancelled": 1}
    assert s["failures"] == {"client_error": 1, "rate_limited": 1, "server_error": 1, "timeout": 2}
    assert s["details"] == {"generator_error": 1, "http_408": 1, "http_429": 1, "http_503": 1, "timeout": 1}
    assert s["error_ratio"] == pytest.approx(4 / 7)
    assert rec.in_flight == 0


def test_throughput_counts_ok_requests_over_the_measured_window():
    rec = Recorder()
    feed(rec, [ok(i, 1.0, tokens=20) for i in range(4)])  # starts 0..3, last ends at 4
    s = rec.summary()
    assert s["duration_s"] == pytest.approx(4.0)
    assert s["throughput"]["requests_per_s"] == pytest.approx(1.0)
    assert s["throughput"]["output_tokens_per_s"] == pytest.approx(20.0)
    assert s["tokens"] == {"prompt": 20, "completion": 80, "source": "usage"}


def test_goodput_is_the_share_meeting_every_slo():
    rec = Recorder(slo_ttft=0.2, slo_latency=1.0)
    results = [ok(0, 0.5, ttft=0.1), ok(1, 0.5, ttft=0.3), ok(2, 1.5, ttft=0.1),
               RequestResult(id=3, detail="http_503", http_status=503, start_s=3.0, latency_s=0.01)]
    feed(rec, results)
    good = rec.summary()["goodput"]
    assert good["met"] == 1 and good["ratio"] == pytest.approx(0.25)
    assert [r.slo_ok for r in results] == [True, False, False, False]


def test_no_goodput_without_slos():
    rec = Recorder()
    r = ok(0, 0.5, ttft=0.1)
    feed(rec, [r])
    assert rec.summary()["goodput"] is None and r.slo_ok is None


def test_itl_and_ttft_percentiles_come_from_ok_requests():
    rec = Recorder()
    feed(rec, [ok(0, 1.0, ttft=0.2, itl=[0.01, 0.03]), ok(1, 1.0, ttft=0.4, itl=[0.02])])
    s = rec.summary()
    assert s["ttft_s"]["p50"] == pytest.approx(0.3)
    assert s["itl_s"]["count"] == 3 and s["itl_s"]["p50"] == pytest.approx(0.02)


def test_knee_is_where_a_step_adds_less_than_ten_percent():
    found = knee([(1, 2.0), (2, 3.9), (4, 7.0), (8, 7.3), (16, 7.2)])
    assert found["concurrency"] == 4 and found["next_concurrency"] == 8
    assert "concurrency 4" in found["message"]


def test_knee_reports_still_growing():
    found = knee([(1, 1.0), (2, 2.0), (4, 4.0)])
    assert found["concurrency"] is None and "still growing" in found["message"]
