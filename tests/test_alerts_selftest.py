"""`make alerts-test`'s verdicts (llmops.alerts.selftest) against a FAKE Alertmanager: its /metrics and log lines
as Debian's prometheus-alertmanager 0.25.0 wrote them (recorded with four webhook receivers: one answering 200,
one 404, one 503 and one on a closed port)."""
from __future__ import annotations

from llmops.alerts import amapi, selftest
from tests.support.fakes.clock import FakeClock
from tests.support.fakes.dashboard import ALERTMANAGER, FakeHTTP, FakeResponse

NOT_FOUND = ('ts=2026-12-08T00:19:21.913Z caller=dispatch.go:352 level=error component=dispatcher msg="Notify for '
             'alerts failed" num_alerts=1 err="notfound/webhook[0]: notify retry canceled due to unrecoverable error '
             'after 1 attempts: unexpected status code 404: http://127.0.0.1:18777/nf: x"')
UNAVAILABLE = ('ts=2026-12-08T00:19:21.913Z caller=notify.go:732 level=warn component=dispatcher receiver=bad '
               'integration=webhook[0] msg="Notify attempt failed, will retry later" attempts=1 '
               'err="unexpected status code 503: http://127.0.0.1:18777/bad: x"')
REFUSED = ('ts=2026-12-08T00:19:21.913Z caller=notify.go:732 level=warn component=dispatcher receiver=refused '
           'integration=webhook[0] msg="Notify attempt failed, will retry later" attempts=1 '
           'err="Post \\"http://127.0.0.1:18778/x\\": dial tcp 127.0.0.1:18778: connect: connection refused"')
RECEIVERS = [("ok", "webhook"), ("notfound", "webhook"), ("bad", "webhook"), ("refused", "webhook")]


def metrics(begun: int, given_up: int, requests: int, requests_failed: int) -> str:
    return "\n".join([
        "# HELP alertmanager_notifications_total The total number of attempted notifications.",
        f'alertmanager_notifications_total{{integration="webhook"}} {begun}',
        f'alertmanager_notifications_failed_total{{integration="webhook",reason="clientError"}} {given_up}',
        'alertmanager_notifications_failed_total{integration="webhook",reason="other"} 0',
        f'alertmanager_notification_requests_total{{integration="webhook"}} {requests}',
        f'alertmanager_notification_requests_failed_total{{integration="webhook"}} {requests_failed}',
        'alertmanager_notification_latency_seconds_count{integration="webhook"} 4',
        'alertmanager_notifications_total{integration="email"} 0',
    ]) + "\n"


def test_failures_names_each_receiver_with_its_reason_retried_or_given_up():
    found = selftest.failures("\n".join([NOT_FOUND, UNAVAILABLE, REFUSED, "level=info msg=unrelated"]))
    assert found == {
        "notfound": "unexpected status code 404: http://127.0.0.1:18777/nf: x",
        "bad": "unexpected status code 503: http://127.0.0.1:18777/bad: x",
        "refused": 'Post "http://127.0.0.1:18778/x": dial tcp 127.0.0.1:18778: connect: connection refused',
    }


def test_failures_splits_a_receiver_whose_integrations_failed_together():
    line = ('level=error component=dispatcher msg="Notify for alerts failed" num_alerts=2 err="ops/webhook[0]: notify '
            'retry canceled after 3 attempts: unexpected status code 503: x; ops/email[0]: notify retry canceled '
            'after 3 attempts: dial tcp 10.0.0.1:25: i/o timeout"')
    assert selftest.failures(line) == {"ops": "dial tcp 10.0.0.1:25: i/o timeout"}  # the receiver's last reason


def test_notification_counts_reads_begun_given_up_and_finished_attempts():
    session = FakeHTTP({f"GET {ALERTMANAGER}/metrics": FakeResponse(200, text=metrics(4, 1, 4, 3))})
    counts = amapi.notification_counts(session, ALERTMANAGER)
    assert counts["webhook"] == {"total": 4.0, "failed": 1.0, "requests": 4.0, "requests_failed": 3.0}
    assert counts["email"]["total"] == 0.0


class FakeAlertmanager:
    """Answers /metrics from a list of snapshots (the next one after each sleep) and appends log lines as it goes."""

    def __init__(self, log_path, steps: list[tuple[str, list[str]]]):
        self.log_path, self.steps, self.step, self.posted = log_path, steps, 0, []
        log_path.write_text("ts=... level=info msg=\"Starting Alertmanager\"\n")
        self.session = FakeHTTP({f"GET {ALERTMANAGER}/metrics": self._metrics,
                                 f"POST {ALERTMANAGER}/api/v2/alerts": self._alerts})

    def _metrics(self, method, url, kwargs):
        return FakeResponse(200, text=self.steps[min(self.step, len(self.steps) - 1)][0])

    def _alerts(self, method, url, kwargs):
        self.posted.append(kwargs["json"])
        return FakeResponse(200, {})

    def sleep(self, seconds: float) -> None:
        self.step += 1
        if self.step < len(self.steps):
            with self.log_path.open("a") as log:
                log.writelines(line + "\n" for line in self.steps[self.step][1])


def run(am: FakeAlertmanager, timeout: float = 20.0) -> dict[str, selftest.Result]:
    clock = FakeClock()

    def sleep(seconds):
        clock.advance(seconds)
        am.sleep(seconds)

    results = selftest.run(am.session, ALERTMANAGER, RECEIVERS, am.log_path, timeout, redact=lambda t: t,
                           clock=clock, sleep=sleep)
    return {r.receiver: r for r in results}


def test_a_receiver_is_sent_only_once_its_attempt_succeeded_not_when_its_notification_began(tmp_path):
    """Alertmanager counts a notification when it begins: 4 begun, 1 given up at once (404), while the 503 and the
    refused connection are still retried. Only the one successful attempt may make a receiver "sent"."""
    am = FakeAlertmanager(tmp_path / "alertmanager.log", [
        (metrics(0, 0, 0, 0), []),
        (metrics(4, 1, 4, 3), []),  # the attempts have ended, their log lines not written yet
        (metrics(4, 1, 6, 5), [NOT_FOUND, UNAVAILABLE, REFUSED]),
    ])
    results = run(am)
    assert {name: r.ok for name, r in results.items()} == {"ok": True, "notfound": False, "bad": False, "refused": False}
    assert "404" in results["notfound"].reason and "503" in results["bad"].reason
    assert "connection refused" in results["refused"].reason
    (fired,), (resolved,) = am.posted
    assert fired["labels"]["alertname"] == selftest.TEST_ALERT and "endsAt" not in fired
    assert resolved["labels"] == fired["labels"] and resolved["endsAt"]  # resolved again on the way out


def test_a_receiver_with_no_attempt_in_time_is_unknown_with_the_wait(tmp_path):
    am = FakeAlertmanager(tmp_path / "alertmanager.log", [(metrics(0, 0, 0, 0), [])])
    results = run(am, timeout=3)
    assert all(r.ok is None and r.reason == "no attempt seen within 3 s" for r in results.values())
    assert len(am.posted) == 2  # fired and resolved, also when nothing was seen
