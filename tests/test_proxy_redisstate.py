"""The queue's shared state in the real redis-server, two workers' states side by side, on a fake clock."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from llmops.proxy.plugins.redisstate import RedisState
from llmops.proxy.queue import Rejected
from tests.support.fakes.clock import FakeClock
from tests.support.redis import real_redis


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with real_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


def workers(url: str, count: int = 2, slots: int = 1, clock=None, **kw) -> list[RedisState]:
    """`count` states sharing one fresh prefix, as the proxy's workers share Redis."""
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    clock = clock or FakeClock()
    return [RedisState(url, max_waiting=kw.get("max_waiting", 10), timeout=kw.get("timeout", 60.0), ageing=1.0,
                       lease=kw.get("lease", 10.0), prefix=prefix, clock=clock, poll=0.02) for _ in range(count)]


async def declared(states, slots: int = 1, deployments: int = 1):
    for state in states:
        await state.declare("m", [(f"b{i}|m", slots) for i in range(deployments)])


async def until(condition, within: float = 10.0):
    """Wait on a condition (an async callable), failing after `within` seconds."""
    async def loop():
        while not await condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(loop(), within)


async def busy(state) -> int:
    return sum((await state.snapshot()).busy.values())


async def waiting(state) -> int:
    return sum((await state.snapshot()).waiting_by_priority().values())


def test_priority_holds_across_workers(redis_url):
    async def scenario():
        clock = FakeClock()
        a, b = workers(redis_url, clock=clock)
        await declared([a, b])
        await a.acquire("m", 0, "running")
        lows = []
        for i in range(3):
            clock.advance(0.01)
            lows.append(asyncio.ensure_future(b.acquire("m", 9, f"low{i}")))
            await until(lambda i=i: _eq(waiting(a), i + 1))
        clock.advance(0.1)
        high = asyncio.ensure_future(a.acquire("m", 0, "high"))
        await until(lambda: _eq(waiting(a), 4))
        a.release("running")
        ticket = await asyncio.wait_for(high, 10)
        assert ticket.token == "high" and not any(f.done() for f in lows)
        order = []
        token = "high"
        for _ in range(3):
            (a if token in a._mine else b).release(token)
            pending = [f for f in lows if not f.done()]
            done, _ = await asyncio.wait(pending, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            (first,) = done  # one slot: exactly one admitted per release
            token = first.result().token
            order.append(token)
            assert await busy(a) == 1
        assert order == ["low0", "low1", "low2"]
        b.release(token)
        await until(lambda: _eq(busy(a), 0))
        await a.close()
        await b.close()

    asyncio.run(scenario())


async def _eq(value, expected) -> bool:
    return await value == expected


def test_two_workers_never_hold_more_than_the_slots(redis_url):
    async def scenario():
        states = workers(redis_url, count=2, max_waiting=32)
        await declared(states, slots=2, deployments=2)
        peak = 0

        async def one(state, i):
            nonlocal peak
            ticket = await state.acquire("m", i % 3, f"r{i}")
            snap = await state.snapshot()
            assert all(n <= 2 for n in snap.busy.values()), snap.busy
            peak = max(peak, sum(snap.busy.values()))
            await asyncio.sleep(0)
            state.release(ticket.token)

        await asyncio.gather(*(one(states[i % 2], i) for i in range(20)))
        await until(lambda: _eq(busy(states[0]), 0))
        assert 1 <= peak <= 4
        for state in states:
            await state.close()

    asyncio.run(scenario())


def test_a_full_shared_queue_refuses_at_once_and_is_unchanged(redis_url):
    async def scenario():
        a, b = workers(redis_url, max_waiting=2)
        await declared([a, b])
        await a.acquire("m", 1, "running")
        w = [asyncio.ensure_future(b.acquire("m", 1, f"w{i}")) for i in range(2)]
        await until(lambda: _eq(waiting(a), 2))
        with pytest.raises(Rejected) as info:
            await a.acquire("m", 0, "one-too-many")
        assert info.value.reason == "full" and await waiting(a) == 2
        for f in w:
            f.cancel()
        await until(lambda: _eq(waiting(a), 0))
        a.release("running")
        await until(lambda: _eq(busy(a), 0))
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_a_waiter_past_the_timeout_gets_429_reason_timeout(redis_url):
    async def scenario():
        clock = FakeClock()
        a, b = workers(redis_url, clock=clock, timeout=5.0)
        await declared([a, b])
        await a.acquire("m", 1, "running")
        waiter = asyncio.ensure_future(b.acquire("m", 1, "slow"))
        await until(lambda: _eq(waiting(a), 1))
        clock.advance(5.0)
        with pytest.raises(Rejected) as info:
            await asyncio.wait_for(waiter, 10)
        assert info.value.reason == "timeout" and "queued 5 s, backend busy" in info.value.message
        assert await waiting(a) == 0 and await busy(a) == 1
        a.release("running")
        await until(lambda: _eq(busy(a), 0))
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_a_worker_that_dies_frees_its_slot_when_its_lease_ends(redis_url):
    async def scenario():
        clock = FakeClock()
        dead, alive = workers(redis_url, clock=clock, lease=6.0, timeout=60.0)
        await declared([dead, alive])
        await dead.acquire("m", 1, "held-by-the-dead")
        dead._renewer.cancel()  # the worker is gone: nobody renews its lease
        waiter = asyncio.ensure_future(alive.acquire("m", 1, "next"))
        await until(lambda: _eq(waiting(alive), 1))
        clock.advance(5.9)
        await asyncio.sleep(0.1)
        assert not waiter.done()
        clock.advance(0.2)  # past the lease
        ticket = await asyncio.wait_for(waiter, 10)
        assert ticket.token == "next" and await busy(alive) == 1
        alive.release("next")
        await until(lambda: _eq(busy(alive), 0))
        await alive.close()
        await dead.close()

    asyncio.run(scenario())


def test_a_client_that_leaves_or_a_cancelled_waiter_leaves_the_shared_line(redis_url):
    async def scenario():
        a, b = workers(redis_url)
        await declared([a, b])
        await a.acquire("m", 1, "running")
        gone = asyncio.Event()

        async def disconnected():
            await gone.wait()

        left = asyncio.ensure_future(b.acquire("m", 1, "left", disconnected))
        cancelled = asyncio.ensure_future(b.acquire("m", 1, "cancelled"))
        await until(lambda: _eq(waiting(a), 2))
        gone.set()
        with pytest.raises(Rejected) as info:
            await asyncio.wait_for(left, 10)
        assert info.value.reason == "client_left"
        cancelled.cancel()
        await until(lambda: _eq(waiting(a), 0))
        a.release("running")
        await until(lambda: _eq(busy(a), 0))
        assert b._mine == {} and a._mine == {}
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_release_is_idempotent(redis_url):
    async def scenario():
        (a,) = workers(redis_url, count=1)
        await declared([a])
        await a.acquire("m", 1, "x")
        a.release("x")
        a.release("x")
        await until(lambda: _eq(busy(a), 0))
        assert (await a.snapshot()).busy == {"b0|m": 0}
        await a.close()

    asyncio.run(scenario())
