"""FAKE Prometheus client: a PromAPI stand-in answering instant queries from a table, for unit tests."""
from __future__ import annotations

from llmops.dashboard.promapi import PromAPI, Sample


class FakeProm:
    """FAKE PromAPI: `answers` maps a query's text to its samples (or a number: one unlabelled sample).

    A query not in the table answers no samples, or fails the test when `strict`; with `error`, every query
    raises it (Prometheus down). `asked` lists the queries in order. scalar() is PromAPI's own, over query().
    """

    def __init__(self, answers: dict[str, list[Sample] | float | None] | None = None,
                 error: Exception | None = None, strict: bool = False):
        self.answers, self.error, self.strict, self.asked = answers or {}, error, strict, []

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        self.asked.append(expr)
        if self.error is not None:
            raise self.error
        if expr not in self.answers:
            if self.strict:
                raise AssertionError(f"unexpected query {expr}")
            return []
        answer = self.answers[expr]
        if answer is None:
            return []
        return [Sample({}, float(answer))] if isinstance(answer, int | float) else list(answer)

    scalar = PromAPI.scalar
