"""The admission queue's rules and its in-process state, on a fake clock (no sleeps, no proxy)."""
from __future__ import annotations

import asyncio

import pytest

from llmops.proxy import queue
from llmops.proxy.plugins.queuestate import LocalState
from llmops.proxy.queue import ADMITTED, WAITING, BadPriority, QueueRules, Rejected, parse_priority
from tests.support.fakes.clock import FakeClock


def rules(slots: int = 1, max_waiting: int = 10, timeout: float = 60.0, ageing: float = 1.0, clock=None,
          deployments: int = 1) -> QueueRules:
    r = QueueRules(max_waiting=max_waiting, timeout=timeout, ageing=ageing, clock=clock or FakeClock())
    r.set_group("m", [(f"b{i}|m", slots) for i in range(deployments)])
    return r


def test_a_free_slot_admits_at_once_and_the_next_request_waits():
    r = rules()
    first, second = r.enqueue("m", 5, "a"), r.enqueue("m", 5, "b")
    assert (first.state, second.state) == (ADMITTED, WAITING)
    assert r.busy == {"b0|m": 1} and r.waiting() == 1


def test_lower_priority_number_is_served_first():
    clock = FakeClock()
    r = rules(clock=clock)
    r.enqueue("m", 0, "running")
    for i, priority in enumerate((9, 9, 9)):
        clock.advance(0.01)
        r.enqueue("m", priority, f"low{i}")
    clock.advance(0.1)
    r.enqueue("m", 0, "high")
    assert [t.token for t in r.release("running")] == ["high"]


def test_equal_priorities_are_served_in_arrival_order():
    clock = FakeClock()
    r = rules(clock=clock)
    r.enqueue("m", 3, "running")
    for name in "abcd":
        r.enqueue("m", 3, name)  # the same instant: the arrival sequence decides
    order = []
    token = "running"
    for _ in "abcd":
        (admitted,) = r.release(token)
        order.append(token := admitted.token)
    assert order == list("abcd")


def test_a_waiting_request_gains_one_level_every_ageing_seconds():
    clock = FakeClock()
    r = rules(clock=clock, ageing=2.0)
    r.enqueue("m", 0, "running")
    r.enqueue("m", 5, "old")          # key = t0 + 10
    clock.advance(9.9)
    r.enqueue("m", 0, "young-high")   # key = t0 + 9.9: still ahead of the aged one
    clock.advance(0.2)
    r.enqueue("m", 0, "later-high")   # key = t0 + 10.1: the old one has aged past it
    assert [t.token for t in r.release("running")] == ["young-high"]
    assert [t.token for t in r.release("young-high")] == ["old"]
    assert [t.token for t in r.release("old")] == ["later-high"]


def test_order_key_is_arrival_plus_priority_times_ageing():
    assert queue.order_key(100.0, 7, 1.5) == 110.5
    assert queue.order_key(100.0, 0, 1.5) == 100.0


def test_a_full_queue_refuses_at_once_and_stays_unchanged():
    r = rules(max_waiting=2)
    r.enqueue("m", 1, "running")
    r.enqueue("m", 1, "w1")
    r.enqueue("m", 1, "w2")
    with pytest.raises(Rejected) as info:
        r.enqueue("m", 0, "w3")
    assert info.value.reason == "full" and info.value.retry_after >= 1
    assert r.waiting() == 2 and "w3" not in r.tickets


def test_a_request_that_waited_past_the_timeout_leaves_with_a_429_reason():
    clock = FakeClock()
    r = rules(clock=clock, timeout=30)
    r.enqueue("m", 1, "running")
    r.enqueue("m", 1, "slow")
    clock.advance(29.9)
    assert r.expired() == []
    clock.advance(0.2)
    assert r.expired() == ["slow"]
    rejection = r.leave("slow", queue.TIMEOUT)
    assert rejection.reason == "timeout" and "queued 30 s, backend busy" in rejection.message
    assert r.waiting() == 0 and r.release("running") == []  # nobody left to admit
    assert r.busy["b0|m"] == 0


def test_release_is_idempotent_and_never_goes_below_zero():
    r = rules()
    r.enqueue("m", 1, "a")
    r.release("a")
    r.release("a")
    r.release("never-seen")
    assert r.busy["b0|m"] == 0 and r.tickets == {}


def test_a_waiting_request_that_is_released_leaves_the_line_and_frees_nothing():
    r = rules()
    r.enqueue("m", 1, "running")
    r.enqueue("m", 1, "gone")
    r.enqueue("m", 1, "next")
    assert r.release("gone") == []
    assert [t.token for t in r.release("running")] == ["next"]
    assert r.busy["b0|m"] == 1


def test_a_client_that_leaves_while_queued_is_out_of_the_line():
    r = rules()
    r.enqueue("m", 1, "running")
    r.enqueue("m", 1, "left")
    assert r.leave("left", queue.CLIENT_LEFT).reason == "client_left"
    assert r.leave("left", queue.CLIENT_LEFT) is None
    assert r.release("running") == [] and r.waiting() == 0


def test_slots_are_kept_per_deployment_and_spread_over_them():
    r = rules(slots=2, deployments=3)
    tickets = [r.enqueue("m", 1, f"r{i}") for i in range(7)]
    assert [t.state for t in tickets].count(ADMITTED) == 6
    assert r.busy == {"b0|m": 2, "b1|m": 2, "b2|m": 2}
    (admitted,) = r.release("r4")
    assert admitted.token == "r6" and admitted.deployment == tickets[4].deployment


def test_a_slot_moves_to_a_free_deployment_when_its_own_is_unhealthy():
    r = rules(deployments=2)
    a = r.enqueue("m", 1, "a")
    own = a.deployment
    other = "b1|m" if own == "b0|m" else "b0|m"
    assert r.move("a", [other]) == other
    assert r.busy == {own: 0, other: 1} and a.deployment == other
    assert r.move("a", [other]) is None  # nowhere else to go


def test_groups_that_share_a_deployment_are_served_by_one_order():
    clock = FakeClock()
    r = QueueRules(max_waiting=10, timeout=60, ageing=1, clock=clock)
    r.set_group("alias-a", [("b|m", 1)])
    r.set_group("alias-b", [("b|m", 1)])
    r.enqueue("alias-a", 5, "running")
    r.enqueue("alias-a", 5, "a-low")
    clock.advance(0.1)
    r.enqueue("alias-b", 0, "b-high")
    assert [t.token for t in r.release("running")] == ["b-high"]


def test_more_slots_admit_the_waiting_at_once():
    r = rules()
    r.enqueue("m", 1, "running")
    r.enqueue("m", 1, "w")
    assert [t.token for t in r.set_group("m", [("b0|m", 2)])] == ["w"]


@pytest.mark.parametrize("value", ["1", 1.0, 2.5, -1, 256, 10**12, True, [1], {"p": 1}])
def test_a_priority_that_is_not_an_integer_0_to_255_is_refused(value):
    with pytest.raises(BadPriority):
        parse_priority(value, 10)


@pytest.mark.parametrize(("value", "expected"), [(None, 10), (0, 0), (255, 255), (7, 7)])
def test_a_priority_0_to_255_is_taken_and_none_means_the_default(value, expected):
    assert parse_priority(value, 10) == expected


# -- the in-process state: futures over the rules -----------------------------------------------------------------

def local(clock=None, **kwargs) -> LocalState:
    state = LocalState(max_waiting=kwargs.get("max_waiting", 10), timeout=kwargs.get("timeout", 60.0),
                       ageing=1.0, clock=clock or FakeClock())
    state.set_group("m", [("b|m", 1)])
    return state


async def _settle():
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_waiter_gets_the_slot_when_the_holder_releases():
    async def scenario():
        state = local()
        first = await state.acquire("m", 1, "a")
        waiter = asyncio.ensure_future(state.acquire("m", 1, "b"))
        await _settle()
        assert not waiter.done()
        state.release(first.token)
        second = await waiter
        assert second.token == "b" and state.rules.busy["b|m"] == 1
        state.release("b")
        assert state.rules.busy["b|m"] == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_the_line():
    async def scenario():
        state = local()
        await state.acquire("m", 1, "a")
        waiter = asyncio.ensure_future(state.acquire("m", 1, "b"))
        await _settle()
        waiter.cancel()
        await _settle()
        assert state.rules.waiting() == 0
        state.release("a")
        assert state.rules.busy["b|m"] == 0

    asyncio.run(scenario())


def test_a_waiter_cancelled_as_it_is_admitted_gives_the_slot_back():
    async def scenario():
        state = local()
        await state.acquire("m", 1, "a")
        waiter = asyncio.ensure_future(state.acquire("m", 1, "b"))
        await _settle()
        state.release("a")   # b's future is resolved ...
        waiter.cancel()      # ... and its task cancelled before it runs
        await _settle()
        assert waiter.cancelled() and state.rules.busy["b|m"] == 0

    asyncio.run(scenario())


def test_a_client_that_disconnects_while_queued_gets_client_left_and_never_a_slot():
    async def scenario():
        state = local()
        rejected = []
        state.on_reject = rejected.append
        await state.acquire("m", 1, "a")
        gone = asyncio.Event()

        async def disconnected():
            await gone.wait()

        waiter = asyncio.ensure_future(state.acquire("m", 1, "b", disconnected))
        await _settle()
        gone.set()
        with pytest.raises(Rejected) as info:
            await waiter
        assert info.value.reason == "client_left" and [r.reason for r in rejected] == ["client_left"]
        state.release("a")
        assert state.rules.busy["b|m"] == 0 and state.rules.tickets == {}

    asyncio.run(scenario())


def test_the_client_is_looked_for_only_when_a_request_must_wait_and_an_unfound_one_still_waits_its_turn():
    async def scenario():
        state = local()
        looked = []

        def unfound():  # as client_gone() when the request is not among the awaiting frames
            looked.append(True)
            return None

        await state.acquire("m", 1, "a", unfound)
        assert looked == []  # a free slot: nobody looks for the client
        waiter = asyncio.ensure_future(state.acquire("m", 1, "b", unfound))
        await _settle()
        assert looked == [True] and not waiter.done()
        state.release("a")
        assert (await waiter).token == "b" and state.rules.busy["b|m"] == 1

    asyncio.run(scenario())


def test_client_gone_finds_the_request_among_the_awaiting_frames():
    from starlette.requests import Request

    from llmops.proxy.plugins.priorityqueue import client_gone

    async def endpoint(request):  # the proxy's endpoint holds `request`; the hook runs further down
        return await hook()

    async def hook():
        gone = client_gone()  # wait_disconnect(the request), not yet started
        try:
            return gone.cr_frame.f_locals["request"]
        finally:
            gone.close()

    async def nowhere():
        return client_gone()

    assert asyncio.run(nowhere()) is None  # (before this test binds its own `request` below)
    request = Request({"type": "http", "method": "POST", "path": "/", "headers": []})
    assert asyncio.run(endpoint(request)) is request


def test_a_waiter_past_the_timeout_gets_a_timeout_rejection():
    async def scenario():
        clock = FakeClock()
        state = local(clock, timeout=5.0)
        await state.acquire("m", 1, "a")
        waiter = asyncio.ensure_future(state.acquire("m", 1, "b"))
        await _settle()
        clock.advance(5.0)
        state._expire()  # what the loop's timer calls at the deadline
        with pytest.raises(Rejected) as info:
            await waiter
        assert info.value.reason == "timeout" and info.value.retry_after >= 1
        assert state.rules.waiting() == 0 and state.rules.busy["b|m"] == 1

    asyncio.run(scenario())


def test_a_full_state_refuses_without_waiting():
    async def scenario():
        state = local(max_waiting=1)
        await state.acquire("m", 1, "a")
        waiter = asyncio.ensure_future(state.acquire("m", 1, "b"))
        await _settle()
        with pytest.raises(Rejected) as info:
            await state.acquire("m", 1, "c")
        assert info.value.reason == "full" and not waiter.done()
        waiter.cancel()

    asyncio.run(scenario())


# -- the Router's per-attempt filter: where an admitted request goes, retries included ----------------------------

def _deployment(base: str, ident: str) -> dict:
    return {"litellm_params": {"model": "ollama_chat/m", "api_base": base}, "model_info": {"id": ident}}


def _plugin_with(slots: dict[str, int]):
    from llmops.proxy.plugins.priorityqueue import PriorityQueue, deployment_key

    plugin = PriorityQueue(environ={"LLMOPS_QUEUE": "{}"})
    plugin._state = LocalState(max_waiting=10, timeout=60.0, ageing=1.0, clock=FakeClock())
    plugin._state.set_group("m", [(deployment_key(base, "m"), n) for base, n in slots.items()])
    return plugin


def _kwargs(token: str, *failed: str) -> dict:
    from llmops.proxy.plugins.priorityqueue import TOKEN_KEY

    breadcrumbs = [{"deployment_id": ident, "exception_type": "APIConnectionError"} for ident in failed]
    return {"metadata": {TOKEN_KEY: token, **({"previous_models": breadcrumbs} if failed else {})}}


def test_a_retry_after_its_deployment_failed_moves_the_slot_to_a_free_one():
    async def scenario():
        plugin = _plugin_with({"http://a": 1, "http://b": 1})
        a, b = _deployment("http://a", "id-a"), _deployment("http://b", "id-b")
        ticket = await plugin.state.acquire("m", 1, "t")
        first = b if ticket.deployment.startswith("http://b") else a
        other = a if first is b else b
        # The first attempt goes where the slot is.
        assert await plugin.async_filter_deployments("m", [a, b], [], _kwargs("t")) == [first]
        # The retry after that deployment failed goes to the other, and the slot moves with it.
        retry = await plugin.async_filter_deployments("m", [a, b], [], _kwargs("t", first["model_info"]["id"]))
        assert retry == [other]
        assert plugin.state.rules.busy[key_of(other)] == 1 and plugin.state.rules.busy[key_of(first)] == 0
        plugin.state.release("t")
        assert sum(plugin.state.rules.busy.values()) == 0

    asyncio.run(scenario())


def test_a_retry_stays_on_its_deployment_when_no_other_slot_is_free():
    async def scenario():
        plugin = _plugin_with({"http://a": 1, "http://b": 1})
        a, b = _deployment("http://a", "id-a"), _deployment("http://b", "id-b")
        one = await plugin.state.acquire("m", 1, "t1")
        await plugin.state.acquire("m", 1, "t2")  # both slots busy
        mine = a if one.deployment.startswith("http://a") else b
        assert await plugin.async_filter_deployments("m", [a, b], [], _kwargs("t1", mine["model_info"]["id"])) == [mine]
        assert plugin.state.rules.busy[key_of(a)] == 1 and plugin.state.rules.busy[key_of(b)] == 1

    asyncio.run(scenario())


def key_of(deployment: dict) -> str:
    from llmops.proxy.plugins.priorityqueue import key_of_deployment

    return key_of_deployment(deployment)


# -- a stream's slot: given back at the backend's last chunk, or when the stream is closed early ------------------

def _chunk(text: str, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


def test_a_stream_gives_its_slot_back_at_its_last_chunk_before_it_is_relayed():
    """LiteLLM's stream wrapper calls the deployment hook with the call's details on the backend's last chunk."""
    async def scenario():
        plugin = _plugin_with({"http://a": 1})
        await plugin.state.acquire("m", 1, "t")
        waiter = asyncio.ensure_future(plugin.state.acquire("m", 1, "next"))
        await _settle()
        assert not waiter.done()  # still generating: the slot is held
        details = {"litellm_params": _kwargs("t"), "model": "m"}  # the logging object's model_call_details
        last = _chunk("b", "stop")
        assert await plugin.async_post_call_streaming_deployment_hook(details, last, None) is None  # chunk unchanged
        await _settle()
        assert waiter.done() and plugin.state.rules.busy[key_of(_deployment("http://a", "x"))] == 1
        plugin.release("t")       # the later paths (the task's end) find nothing to give back
        assert plugin.state.rules.busy[key_of(_deployment("http://a", "x"))] == 1
        plugin.release("next")
        assert plugin.state.rules.busy[key_of(_deployment("http://a", "x"))] == 0

    asyncio.run(scenario())


def test_a_stream_without_a_slot_is_left_alone_by_the_last_chunk_hook():
    async def scenario():
        plugin = _plugin_with({"http://a": 1})
        await plugin.state.acquire("m", 1, "t")
        for details in ({"litellm_params": {"metadata": {}}}, {}, None):
            assert await plugin.async_post_call_streaming_deployment_hook(details, _chunk("b", "stop"), None) is None
        assert plugin.state.rules.busy[key_of(_deployment("http://a", "x"))] == 1

    asyncio.run(scenario())


def test_the_plugin_leaves_litellm_on_its_fast_streaming_path():
    """Only a callback that overrides the iterator hook puts streams on LiteLLM's wrapped path (a thread hop at each
    stream's end); the queue gives a stream's slot back through the deployment hook instead."""
    from llmops.proxy.plugins.priorityqueue import PriorityQueue

    assert "async_post_call_streaming_iterator_hook" not in PriorityQueue.__dict__
    assert "async_post_call_streaming_deployment_hook" in PriorityQueue.__dict__


# -- traffic that goes around the queue ---------------------------------------------------------------------------

def test_a_litellm_health_check_is_counted_on_its_backend_and_a_request_is_not():
    from prometheus_client import CollectorRegistry, Counter

    from llmops.proxy.counts import HEALTH_CHECK_ALIAS

    registry = CollectorRegistry()
    plugin = _plugin_with({"http://b1:11434": 1})
    plugin._metrics = {"health_checks": Counter("llmops_queue_health_checks", "checks", ["backend", "model"],
                                                registry=registry)}
    # The kwargs' shape as LiteLLM's health check hands them to log_pre_api_call (measured on the installed LiteLLM).
    check = {"litellm_params": {"api_base": "http://b1:11434/api/chat",
                                "metadata": {"tags": [HEALTH_CHECK_ALIAS], "user_api_key_alias": HEALTH_CHECK_ALIAS}}}
    request = {"litellm_params": {"api_base": "http://b1:11434/api/chat", "metadata": {"user_api_key_alias": "team"}}}
    for kwargs in (check, request, check, {"litellm_params": None}, {"litellm_params": {"metadata": "odd"}}):
        plugin.log_pre_api_call("smollm2:135m", [], kwargs)  # never raises, whatever it is handed
    assert registry.get_sample_value("llmops_queue_health_checks_total",
                                     {"backend": "http://b1:11434", "model": "smollm2:135m"}) == 2
    assert plugin._state.rules.busy.get("http://b1:11434|m", 0) == 0  # it took no slot
