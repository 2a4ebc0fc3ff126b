"""Where the admission queue's state lives: in this process (asyncio futures over llmops.proxy.queue's rules).

`acquire` returns a Ticket holding a slot, or raises Rejected (full, timeout, client_left); `release` gives the
slot back, idempotently, from any path. A waiter whose task is cancelled leaves the line (or gives back the
slot it was just handed) in the same `finally`.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

from ..queue import ADMITTED, CLIENT_LEFT, TIMEOUT, QueueRules, Rejected, Ticket


class LocalState:
    """One worker's queue: the rules plus one future per waiting request and one timer for the nearest deadline."""

    def __init__(self, max_waiting: int, timeout: float, ageing: float, clock: Callable[[], float] = time.monotonic):
        self.rules = QueueRules(max_waiting=max_waiting, timeout=timeout, ageing=ageing, clock=clock)
        self.clock = clock
        self._futures: dict[str, asyncio.Future] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.on_admit: Callable[[Ticket], None] | None = None
        self.on_reject: Callable[[Rejected], None] | None = None

    def set_group(self, group: str, deployments: Iterable[tuple[str, int]]) -> None:
        self._wake(self.rules.set_group(group, deployments))

    async def declare(self, group: str, deployments: Iterable[tuple[str, int]]) -> None:
        """set_group with RedisState's signature (the plug-in awaits either)."""
        self.set_group(group, deployments)

    def knows(self, group: str) -> bool:
        return self.rules.knows(group)

    async def acquire(self, group: str, priority: int, token: str,
                      disconnected: Callable[[], Awaitable[object] | None] | None = None) -> Ticket:
        """Wait for a slot of `group`; `disconnected` (a coroutine function) returns when the client has gone."""
        try:
            ticket = self.rules.enqueue(group, priority, token)
        except Rejected as exc:
            self._rejected(exc)
            raise
        if ticket.state == ADMITTED:
            self._admitted(ticket)
            return ticket
        future = asyncio.get_running_loop().create_future()
        self._futures[token] = future
        self._arm_timer()
        gone = disconnected() if disconnected else None  # None: the client cannot be watched
        watcher = asyncio.ensure_future(gone) if gone is not None else None
        if watcher is not None:
            watcher.add_done_callback(lambda w: self._client_left(token, w))
        try:
            return await future
        except BaseException:
            # Cancelled (or rejected): out of the line, or the slot just handed over goes back.
            self.release(token)
            raise
        finally:
            self._futures.pop(token, None)
            if watcher is not None:
                watcher.cancel()

    def release(self, token: str) -> None:
        """Give back the slot (or the place in the line) of `token`; a second call does nothing."""
        self._wake(self.rules.release(token))

    def move(self, token: str, allowed: Iterable[str]) -> str | None:
        return self.rules.move(token, allowed)

    def deployment_of(self, token: str) -> str | None:
        ticket = self.rules.tickets.get(token)
        return ticket.deployment if ticket is not None and ticket.state == ADMITTED else None

    # -- inside ---------------------------------------------------------------------------------------------
    def _wake(self, admitted: list[Ticket]) -> None:
        for ticket in admitted:
            future = self._futures.get(ticket.token)
            if future is None or future.done():
                self.rules.release(ticket.token)  # its waiter is gone: the slot goes on at once
                continue
            self._admitted(ticket)
            future.set_result(ticket)

    def _leave(self, token: str, reason: str) -> None:
        rejection = self.rules.leave(token, reason)
        future = self._futures.get(token)
        if rejection is not None:
            self._rejected(rejection)
            if future is not None and not future.done():
                future.set_exception(rejection)

    def _client_left(self, token: str, watcher: asyncio.Future) -> None:
        if not watcher.cancelled() and watcher.exception() is None:
            self._leave(token, CLIENT_LEFT)

    def _arm_timer(self) -> None:
        deadline = self.rules.next_deadline()
        if deadline is None or (self._timer_at is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = asyncio.get_running_loop().call_later(max(0.0, deadline - self.clock()), self._expire)

    def _expire(self) -> None:
        self._timer = self._timer_at = None
        for token in self.rules.expired():
            self._leave(token, TIMEOUT)
        if self.rules.next_deadline() is not None:
            self._arm_timer()

    def _admitted(self, ticket: Ticket) -> None:
        if self.on_admit is not None:
            self.on_admit(ticket)

    def _rejected(self, rejection: Rejected) -> None:
        if self.on_reject is not None:
            self.on_reject(rejection)
