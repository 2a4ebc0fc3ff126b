"""The proxy plug-ins' own logic without a proxy: tool_choice carried in extra_body, and the request log's tool
counts and the queue's priority and wait read from LiteLLM's event payloads (the real proxy runs them in
test_backend_tools_real.py and test_proxy_queue_integration.py)."""
from __future__ import annotations

from llmops.proxy.plugins.requestlog import RANK_ATTEMPT_FAILED, RANK_SUCCESS, RequestLog
from llmops.proxy.plugins.toolchoice import carry

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


def test_tool_choice_is_copied_into_extra_body_only_beside_tools():
    data = carry({"tools": [TOOL], "tool_choice": "required", "extra_body": {"keep": 1}})
    assert data["extra_body"] == {"keep": 1, "tool_choice": "required"}
    assert "extra_body" not in carry({"tool_choice": "required"})
    assert "extra_body" not in carry({"tools": [TOOL]})


def event(tools, response) -> dict:
    return {"litellm_params": {"proxy_server_request": {"body": {"model": "m", "tools": tools}}},
            "standard_logging_object": {"litellm_call_id": "c1", "startTime": 1.0, "call_type": "acompletion",
                                        "response": response}}


def test_a_row_counts_the_tools_offered_and_the_calls_answered():
    log = RequestLog(environ={})
    calls = {"choices": [{"finish_reason": "tool_calls", "message": {"content": None, "tool_calls": [{}, {}]}}]}
    row = log._from_event(event([TOOL, TOOL, TOOL], calls), None, RANK_SUCCESS)
    assert (row["tools"], row["tool_calls"]) == (3, 2)
    text = {"choices": [{"finish_reason": "stop", "message": {"content": "hi"}}]}
    assert log._from_event(event([TOOL], text), None, RANK_SUCCESS)["tool_calls"] == 0
    plain = log._from_event(event(None, text), None, RANK_SUCCESS)
    assert plain["tools"] is None and "tool_calls" not in plain
    failed = log._from_event(event([TOOL], None), RuntimeError("x"), RANK_ATTEMPT_FAILED)
    assert failed["tools"] == 1 and "tool_calls" not in failed


def test_a_proxy_error_row_counts_the_tools_offered():
    row = RequestLog(environ={})._from_hook({"model": "m", "tools": [TOOL]}, ValueError("bad"), None)
    assert row["tools"] == 1


def test_a_row_carries_the_queues_priority_and_wait_from_the_requests_metadata():
    log = RequestLog(environ={})
    payload = event(None, {"choices": [{"finish_reason": "stop", "message": {"content": "hi"}}]})
    payload["litellm_params"]["metadata"] = {"llmops_queue_priority": 0, "llmops_queue_wait_ms": 812.25}
    row = log._from_event(payload, None, RANK_SUCCESS)
    assert (row["priority"], row["queue_wait_ms"]) == (0, 812.25)
    assert "priority" not in log._from_event(event(None, None), RuntimeError("x"), RANK_ATTEMPT_FAILED)
    refused = log._from_hook({"model": "m", "metadata": {"llmops_queue_priority": 9, "llmops_queue_wait_ms": 60000.0}},
                             ValueError("queued 60 s, backend busy"), None)
    assert (refused["priority"], refused["queue_wait_ms"]) == (9, 60000.0)
