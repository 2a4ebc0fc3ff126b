"""The proxy's admission queue: pure rules (no I/O, no asyncio), with the clock passed in.

A backend's model has N slots. A request for a model group takes a slot on one of the group's deployments
(backend, model) or waits. Waiting requests are served lowest order key first, where

    key = arrival time + priority x ageing

so equal priorities go in arrival order, and a waiting request gains one priority level every `ageing`
seconds (a request of priority p arriving at t is served before a priority-0 request arriving after
t + p x ageing): nobody starves while `p x ageing` is below the timeout. The key never changes while a
request waits, so one sorted structure serves (a heap here, a Redis sorted set across workers).

Bounds: when `max_waiting` requests already wait, a new one is refused at once ("full"); a request that
waited `timeout` seconds leaves ("timeout"). A slot is given back by `release`, idempotently; a waiting
request that goes away (its client left) leaves by `leave`. Every admission these calls cause is
returned, so the caller can wake the admitted requests.
"""
from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

PRIORITY_MIN, PRIORITY_MAX = 0, 255
WAITING, ADMITTED, RELEASED, LEFT = "waiting", "admitted", "released", "left"
FULL, TIMEOUT, CLIENT_LEFT = "full", "timeout", "client_left"
REASONS = (FULL, TIMEOUT, CLIENT_LEFT)
# Where the plug-in leaves a request's priority and queue wait for the request log (the request's metadata).
PRIORITY_META, WAIT_META = "llmops_queue_priority", "llmops_queue_wait_ms"
# Weight of the newest hold time in the running mean that Retry-After is estimated from.
HOLD_EWMA = 0.2


class BadPriority(ValueError):
    """A request's `priority` that is not a whole number in PRIORITY_MIN..PRIORITY_MAX."""


class Rejected(Exception):
    """A request the queue will not serve: reason is full, timeout or client_left."""

    def __init__(self, reason: str, message: str, retry_after: int, waited: float | None = None):
        super().__init__(message)
        self.reason, self.message, self.retry_after, self.waited = reason, message, retry_after, waited


def parse_priority(value: object, default: int) -> int:
    """The body's `priority`: None means `default`; else an integer 0-255 (lower is served first)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadPriority(f"priority must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX} "
                          f"(lower is served first), got {value!r:.40}")
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise BadPriority(f"priority {value} is outside {PRIORITY_MIN}-{PRIORITY_MAX} (lower is served first)")
    return value


def order_key(arrival: float, priority: int, ageing: float) -> float:
    """The static order of a waiting request: lowest first (see the module docstring)."""
    return arrival + priority * ageing


@dataclass(eq=False)
class Ticket:
    """One request's place: waiting in `group`, then holding a slot on `deployment`."""

    token: str
    group: str
    priority: int
    arrival: float
    key: float
    deadline: float
    seq: int
    state: str = WAITING
    deployment: str | None = None
    admitted_at: float | None = None

    @property
    def wait(self) -> float | None:
        """Seconds it waited before its slot, once admitted."""
        return None if self.admitted_at is None else self.admitted_at - self.arrival


@dataclass
class QueueRules:
    """Slots per deployment, one ordered line per model group; all times from `clock`."""

    max_waiting: int
    timeout: float
    ageing: float
    clock: Callable[[], float]
    slots: dict[str, int] = field(default_factory=dict)     # deployment -> N
    busy: dict[str, int] = field(default_factory=dict)      # deployment -> slots held
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # model group -> its deployments
    tickets: dict[str, Ticket] = field(default_factory=dict)  # token -> a waiting or admitted ticket
    mean_hold: float = 1.0
    _lines: dict[str, list] = field(default_factory=dict)
    _seq: itertools.count = field(default_factory=itertools.count)
    _turn: itertools.count = field(default_factory=itertools.count)

    # -- the deployments ----------------------------------------------------------------------------------
    def set_group(self, group: str, deployments: Iterable[tuple[str, int]]) -> list[Ticket]:
        """Declare (or change) a group's deployments and their slot counts; returns any admissions it allows."""
        names = []
        for name, count in deployments:
            self.slots[name] = max(1, int(count))
            self.busy.setdefault(name, 0)
            names.append(name)
        self.groups[group] = tuple(names)
        return self._admit()

    def knows(self, group: str) -> bool:
        return group in self.groups

    def free(self, deployment: str) -> int:
        return self.slots.get(deployment, 0) - self.busy.get(deployment, 0)

    # -- a request's life ---------------------------------------------------------------------------------
    def enqueue(self, group: str, priority: int, token: str) -> Ticket:
        """A new request: admitted at once when a slot is free and nobody waits ahead, else waiting.

        Raises Rejected(full) when max_waiting already wait, and KeyError for a group never declared."""
        deployments = self.groups[group]
        now = self.clock()
        ticket = Ticket(token=token, group=group, priority=priority, arrival=now,
                        key=order_key(now, priority, self.ageing), deadline=now + self.timeout, seq=next(self._seq))
        line = self._lines.setdefault(group, [])
        self._drop_gone(line)
        if not line and (target := self._pick(deployments)) is not None:
            self._take(ticket, target, now)
            self.tickets[token] = ticket
            return ticket
        if self.waiting() >= self.max_waiting:
            raise Rejected(FULL, f"queue full: {self.waiting()} requests already wait, backend busy",
                           self.retry_after(group))
        heapq.heappush(line, (ticket.key, ticket.seq, ticket))
        self.tickets[token] = ticket
        # A request with a better key than a head that could not be served does not change anything by itself,
        # but the deployments may have freed up without an admission (set_group with more slots): admit now.
        self._admit()
        return ticket

    def release(self, token: str) -> list[Ticket]:
        """Give back the slot of an admitted request (or take a waiting one out); idempotent. Returns admissions."""
        ticket = self.tickets.pop(token, None)
        if ticket is None:
            return []
        if ticket.state == ADMITTED:
            ticket.state = RELEASED
            self.busy[ticket.deployment] -= 1
            held = self.clock() - (ticket.admitted_at or ticket.arrival)
            self.mean_hold += HOLD_EWMA * (held - self.mean_hold)
            return self._admit()
        ticket.state = LEFT  # still waiting: it leaves the line (lazily removed from the heap)
        return []

    def leave(self, token: str, reason: str) -> Rejected | None:
        """A waiting request goes away (timeout, client_left): returns its rejection, or None if not waiting."""
        ticket = self.tickets.get(token)
        if ticket is None or ticket.state != WAITING:
            return None
        del self.tickets[token]
        ticket.state = LEFT
        if reason == TIMEOUT:
            waited = self.clock() - ticket.arrival
            return Rejected(TIMEOUT, f"queued {waited:.0f} s, backend busy", self.retry_after(ticket.group), waited)
        return Rejected(reason, "client left while queued", 0, self.clock() - ticket.arrival)

    def expired(self) -> list[str]:
        """Tokens of waiting requests whose deadline has passed (pass each to leave(token, TIMEOUT))."""
        now = self.clock()
        return [t.token for t in self.tickets.values() if t.state == WAITING and t.deadline <= now]

    def next_deadline(self) -> float | None:
        deadlines = [t.deadline for t in self.tickets.values() if t.state == WAITING]
        return min(deadlines) if deadlines else None

    def move(self, token: str, allowed: Iterable[str]) -> str | None:
        """Move an admitted request's slot to a free one of `allowed` (its own went unhealthy); the new one, or None."""
        ticket = self.tickets.get(token)
        if ticket is None or ticket.state != ADMITTED:
            return None
        target = self._pick([d for d in allowed if d != ticket.deployment])
        if target is None:
            return None
        self.busy[ticket.deployment] -= 1
        self.busy[target] += 1
        ticket.deployment = target
        self._admit()
        return target

    # -- what is seen -------------------------------------------------------------------------------------
    def waiting(self, group: str | None = None) -> int:
        return sum(1 for t in self.tickets.values() if t.state == WAITING and (group is None or t.group == group))

    def waiting_by_priority(self) -> dict[tuple[str, int], int]:
        counts: dict[tuple[str, int], int] = {}
        for t in self.tickets.values():
            if t.state == WAITING:
                counts[(t.group, t.priority)] = counts.get((t.group, t.priority), 0) + 1
        return counts

    def retry_after(self, group: str) -> int:
        """Seconds after which a refused request may find room: the line's drain time at the mean hold, at least 1."""
        slots = sum(self.slots.get(d, 1) for d in self.groups.get(group, ())) or 1
        return max(1, math.ceil(self.mean_hold * (self.waiting(group) + 1) / slots))

    # -- inside ---------------------------------------------------------------------------------------------
    def _pick(self, deployments: Iterable[str]) -> str | None:
        """The free deployment with the most free share; ties go round in turn."""
        free = [d for d in deployments if self.free(d) > 0]
        if not free:
            return None
        best = max(self.free(d) / self.slots[d] for d in free)
        tied = [d for d in free if self.free(d) / self.slots[d] == best]
        return tied[next(self._turn) % len(tied)]

    def _take(self, ticket: Ticket, deployment: str, now: float) -> None:
        ticket.state, ticket.deployment, ticket.admitted_at = ADMITTED, deployment, now
        self.busy[deployment] += 1

    @staticmethod
    def _drop_gone(line: list) -> None:
        while line and line[0][2].state != WAITING:
            heapq.heappop(line)

    def _admit(self) -> list[Ticket]:
        """Serve the heads: the lowest key among the groups that have a free deployment, until none can be served."""
        admitted = []
        now = self.clock()
        while True:
            best = None
            for group, line in self._lines.items():
                self._drop_gone(line)
                if line and (best is None or line[0][:2] < best[1][0][:2]):
                    if any(self.free(d) > 0 for d in self.groups.get(group, ())):
                        best = (group, line)
            if best is None:
                return admitted
            group, line = best
            _, _, ticket = heapq.heappop(line)
            self._take(ticket, self._pick(self.groups[group]), now)
            admitted.append(ticket)
