"""The outcome classes: one status code, exactly one class."""
from __future__ import annotations

import pytest

from llmops import outcomes


@pytest.mark.parametrize(("status", "expected"), [
    (200, "ok"), (201, "ok"), ("200", "ok"),
    (400, "client_error"), (404, "client_error"), (422, "client_error"), (499, "client_error"),
    (429, "rate_limited"), ("429", "rate_limited"),
    (408, "timeout"),  # LiteLLM's Timeout (status_code 408) when the backend call timed out
    (500, "server_error"), (502, "server_error"), (503, "server_error"), (504, "server_error"),
    (None, "server_error"),  # no answer at all
])
def test_each_status_code_has_exactly_one_class(status, expected):
    assert outcomes.classify(status) == expected


def test_a_client_side_timeout_is_a_timeout_whatever_the_status():
    assert outcomes.classify(None, timed_out=True) == "timeout"


@pytest.mark.parametrize("bad", ["abc", 0, 99, 600, "4xx"])
def test_a_value_that_is_no_status_code_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match=str(bad)):
        outcomes.classify(bad)


def test_every_class_has_words_and_a_legend():
    assert set(outcomes.LABELS) == set(outcomes.LEGENDS) == set(outcomes.GENERATOR_CLASSES)
    assert outcomes.GENERATOR_CLASSES == (*outcomes.CLASSES, "invalid_output")
    assert outcomes.describe("client_error", 3) == "3 client errors"
    assert outcomes.describe("timeout", 1) == "1 timeout"
    assert set(outcomes.FAILURES) == {"server_error", "timeout"}
