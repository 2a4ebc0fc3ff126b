"""The admission queue's state in Redis, shared by every proxy worker and every proxy in front of the same backends.

The rules are llmops.proxy.queue's (order key arrival + priority x ageing, slots per backend|model, QUEUE_MAX,
QUEUE_TIMEOUT), run inside Redis as Lua scripts so that a decision is atomic across workers. Times come from the
caller's clock (`now` is an argument of every script), so the tests drive it with a fake clock against the real
redis-server; in the proxy it is time.time(), which proxies on other hosts must keep in step (NTP).

Keys under `prefix`:
  line        ZSET  waiting tokens, score = order key
  wait        HASH  token -> "group\\tpriority\\tarrival" of a waiting token
  walive      ZSET  waiting token -> lease expiry (a worker that dies leaves the line within `lease` s)
  held:<dep>  ZSET  token -> lease expiry, one per deployment: its card is the busy count
  adm         HASH  token -> deployment of an admitted token
  slots       HASH  deployment -> N
  groups      HASH  model group -> its deployments, "\\n"-joined
  turn        a counter that breaks ties between equally free deployments

Each worker renews the leases of its own tokens every `lease / 3` s; an admission is published on `<prefix>admit`
and each worker also looks again every POLL s, so a lost message delays a waiter, it does not strand it.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

from redis.exceptions import RedisError

from ..queue import CLIENT_LEFT, FULL, HOLD_EWMA, TIMEOUT, Rejected, Ticket, order_key

POLL = 0.5  # seconds between a waiter's own looks at whether it was admitted
SCAN = 64  # waiting tokens one admission pass looks at

# Shared by the scripts: drop expired leases, then admit heads while one of their group's deployments is free.
_ADMIT = r"""
local P = KEYS[1]
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local function purge()
  local gone = redis.call('ZRANGEBYSCORE', P..'walive', '-inf', now)
  for _, t in ipairs(gone) do
    redis.call('ZREM', P..'line', t); redis.call('HDEL', P..'wait', t); redis.call('ZREM', P..'walive', t)
  end
  local flat = redis.call('HGETALL', P..'slots')
  for i = 1, #flat, 2 do
    local held = P..'held:'..flat[i]
    for _, t in ipairs(redis.call('ZRANGEBYSCORE', held, '-inf', now)) do redis.call('HDEL', P..'adm', t) end
    redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
  end
end
local function free(d)
  local n = tonumber(redis.call('HGET', P..'slots', d) or '0')
  return n - redis.call('ZCARD', P..'held:'..d), n
end
local function pick(deps)
  local best, tied = -1, {}
  for _, d in ipairs(deps) do
    local f, n = free(d)
    if f > 0 and n > 0 then
      local share = f / n
      if share > best then best, tied = share, {d} elseif share == best then table.insert(tied, d) end
    end
  end
  if #tied == 0 then return nil end
  local turn = redis.call('INCR', P..'turn')
  return tied[(turn % #tied) + 1]
end
local function take(t, d)
  redis.call('ZREM', P..'line', t); redis.call('HDEL', P..'wait', t); redis.call('ZREM', P..'walive', t)
  redis.call('ZADD', P..'held:'..d, now + lease, t)
  redis.call('HSET', P..'adm', t, d)
  redis.call('PUBLISH', P..'admit', t)
end
local function deps_of(group)
  local text = redis.call('HGET', P..'groups', group)
  local out = {}
  if text then for d in string.gmatch(text, '[^\n]+') do table.insert(out, d) end end
  return out
end
local function admit()
  local admitted = {}
  while true do
    local heads = redis.call('ZRANGE', P..'line', 0, %(scan)d - 1)
    local served = false
    for _, t in ipairs(heads) do
      local info = redis.call('HGET', P..'wait', t)
      if info then
        local group = string.match(info, '^([^\t]*)')
        local d = pick(deps_of(group))
        if d then take(t, d); table.insert(admitted, t); table.insert(admitted, d); served = true; break end
      else
        redis.call('ZREM', P..'line', t)
      end
    end
    if not served then return admitted end
  end
end
""".replace("%(scan)d", str(SCAN))

# KEYS[1] prefix; ARGV now, lease, group, deployments ("\n"-joined), slots (same order, "\n"-joined)
DECLARE = _ADMIT + r"""
local deps, counts = {}, {}
for d in string.gmatch(ARGV[4], '[^\n]+') do table.insert(deps, d) end
for n in string.gmatch(ARGV[5], '[^\n]+') do table.insert(counts, n) end
for i, d in ipairs(deps) do redis.call('HSET', P..'slots', d, counts[i]) end
redis.call('HSET', P..'groups', ARGV[3], ARGV[4])
purge()
return admit()
"""

# ARGV now, lease, token, group, priority, key, max_waiting -> {"admitted", dep} | {"waiting"} | {"full", waiting}
ENQUEUE = _ADMIT + r"""
local t = ARGV[3]
purge()
redis.call('ZADD', P..'line', tonumber(ARGV[6]), t)
redis.call('HSET', P..'wait', t, ARGV[4]..'\t'..ARGV[5]..'\t'..ARGV[1])
redis.call('ZADD', P..'walive', now + lease, t)
admit()
local d = redis.call('HGET', P..'adm', t)
if d then return {'admitted', d} end
local waiting = redis.call('ZCARD', P..'line')
if waiting > tonumber(ARGV[7]) then
  redis.call('ZREM', P..'line', t); redis.call('HDEL', P..'wait', t); redis.call('ZREM', P..'walive', t)
  return {'full', tostring(waiting - 1)}
end
return {'waiting'}
"""

# ARGV now, lease, token -> the deployment it held (or "" if it was waiting / unknown); admits the next
RELEASE = _ADMIT + r"""
local t = ARGV[3]
local d = redis.call('HGET', P..'adm', t)
if d then
  redis.call('ZREM', P..'held:'..d, t); redis.call('HDEL', P..'adm', t)
else
  redis.call('ZREM', P..'line', t); redis.call('HDEL', P..'wait', t); redis.call('ZREM', P..'walive', t)
  d = ''
end
purge()
admit()
return d
"""

# ARGV now, lease, token -> {"left"} when it was waiting (now out of the line), {"admitted", dep}, or {"gone"}
LEAVE = _ADMIT + r"""
local t = ARGV[3]
if redis.call('ZREM', P..'line', t) == 1 then
  redis.call('HDEL', P..'wait', t); redis.call('ZREM', P..'walive', t)
  return {'left'}
end
local d = redis.call('HGET', P..'adm', t)
if d then return {'admitted', d} end
return {'gone'}
"""

# ARGV now, lease, tokens... : push each token's lease to now + lease (held or waiting)
RENEW = _ADMIT + r"""
for i = 3, #ARGV do
  local t = ARGV[i]
  local d = redis.call('HGET', P..'adm', t)
  if d then redis.call('ZADD', P..'held:'..d, 'XX', now + lease, t)
  else redis.call('ZADD', P..'walive', 'XX', now + lease, t) end
end
purge()
return admit()
"""

# ARGV now, lease, token, allowed... -> the deployment its slot moved to, or ""
MOVE = _ADMIT + r"""
local t = ARGV[3]
local own = redis.call('HGET', P..'adm', t)
if not own then return '' end
local allowed = {}
for i = 4, #ARGV do if ARGV[i] ~= own then table.insert(allowed, ARGV[i]) end end
local d = pick(allowed)
if not d then return '' end
redis.call('ZREM', P..'held:'..own, t)
redis.call('ZADD', P..'held:'..d, now + lease, t)
redis.call('HSET', P..'adm', t, d)
admit()
return d
"""

# ARGV now, lease -> {slots: [dep, n, busy, ...], waiting: [group\tpriority, ...]}
SNAPSHOT = _ADMIT + r"""
purge()
local out = {}
local flat = redis.call('HGETALL', P..'slots')
for i = 1, #flat, 2 do
  table.insert(out, flat[i]); table.insert(out, flat[i + 1])
  table.insert(out, tostring(redis.call('ZCARD', P..'held:'..flat[i])))
end
local waits = {}
for _, info in ipairs(redis.call('HVALS', P..'wait')) do
  table.insert(waits, string.match(info, '^([^\t]*\t[^\t]*)'))
end
return {out, waits}
"""


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Snapshot:
    """The shared state as one read: slots and busy by deployment, waiting by (group, priority)."""

    def __init__(self, slots: dict[str, int], busy: dict[str, int], waiting: dict[tuple[str, int], int]):
        self.slots, self.busy, self._waiting = slots, busy, waiting

    def waiting_by_priority(self) -> dict[tuple[str, int], int]:
        return dict(self._waiting)


class RedisState:
    """The queue's state in Redis, with this worker's waiters as asyncio futures (as LocalState, async calls)."""

    def __init__(self, url: str, max_waiting: int, timeout: float, ageing: float, lease: float = 10.0,
                 prefix: str = "llmops:queue:", clock: Callable[[], float] = time.time, client=None,
                 poll: float = POLL):
        import redis.asyncio as aioredis

        self.redis = client if client is not None else aioredis.from_url(url)
        self.max_waiting, self.timeout, self.ageing, self.lease = max_waiting, timeout, ageing, lease
        self.prefix, self.clock, self.poll = prefix, clock, poll
        self._scripts = {name: self.redis.register_script(text) for name, text in (
            ("declare", DECLARE), ("enqueue", ENQUEUE), ("release", RELEASE), ("leave", LEAVE),
            ("renew", RENEW), ("move", MOVE), ("snapshot", SNAPSHOT))}
        self._mine: dict[str, Ticket] = {}  # this worker's tokens, waiting or admitted
        self._futures: dict[str, asyncio.Future] = {}
        self._known: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._listener: asyncio.Task | None = None
        self._renewer: asyncio.Task | None = None
        self.mean_hold = 1.0
        self.on_admit: Callable[[Ticket], None] | None = None
        self.on_reject: Callable[[Rejected], None] | None = None

    async def _run(self, name: str, *args) -> object:
        return await self._scripts[name](keys=[self.prefix], args=[self.clock(), self.lease, *args])

    # -- the deployments -----------------------------------------------------------------------------------
    async def declare(self, group: str, deployments: Iterable[tuple[str, int]]) -> None:
        pairs = [(name, max(1, int(n))) for name, n in deployments]
        await self._run("declare", group, "\n".join(p[0] for p in pairs), "\n".join(str(p[1]) for p in pairs))
        self._known.add(group)

    def knows(self, group: str) -> bool:
        return group in self._known

    # -- a request's life ----------------------------------------------------------------------------------
    async def acquire(self, group: str, priority: int, token: str,
                      disconnected: Callable[[], Awaitable[object] | None] | None = None) -> Ticket:
        """Wait for a slot of `group` (shared with every worker); raises Rejected (full, timeout, client_left)."""
        self._start_background()
        now = self.clock()
        ticket = Ticket(token=token, group=group, priority=priority, arrival=now,
                        key=order_key(now, priority, self.ageing), deadline=now + self.timeout, seq=0)
        future = asyncio.get_running_loop().create_future()
        self._futures[token] = future
        self._mine[token] = ticket
        gone = disconnected() if disconnected else None  # None: the client cannot be watched
        watcher = asyncio.ensure_future(gone) if gone is not None else None
        try:
            answer = [_text(x) for x in await self._run("enqueue", token, group, priority, ticket.key,
                                                         self.max_waiting)]
            if answer[0] == "full":
                self._mine.pop(token, None)
                raise self._rejected(Rejected(FULL, f"queue full: {answer[1]} requests already wait, backend busy",
                                              self.retry_after(group)))
            if answer[0] == "admitted":
                return self._admitted(ticket, answer[1])
            return await self._wait(ticket, future, watcher)
        except BaseException:
            if token in self._mine and self._mine[token].deployment is None:
                await self._release(token)  # out of the line, or the slot handed over meanwhile goes back
            raise
        finally:
            self._futures.pop(token, None)
            if watcher is not None:
                watcher.cancel()

    async def _wait(self, ticket: Ticket, future: asyncio.Future, watcher: asyncio.Future | None) -> Ticket:
        token = ticket.token
        while True:
            remaining = ticket.deadline - self.clock()
            waits = [future] + ([watcher] if watcher is not None else [])
            done, _ = await asyncio.wait(waits, timeout=max(0.0, min(self.poll, remaining)),
                                         return_when=asyncio.FIRST_COMPLETED)
            if watcher is not None and watcher in done and not watcher.cancelled() and watcher.exception() is None:
                answer = [_text(x) for x in await self._run("leave", token)]
                if answer[0] == "admitted":  # admitted as it left: the slot goes back at once
                    ticket.deployment = answer[1]
                    await self._release(token)
                self._mine.pop(token, None)
                raise self._rejected(Rejected(CLIENT_LEFT, "client left while queued", 0,
                                              self.clock() - ticket.arrival))
            await self._run("renew", token)  # keeps its lease, frees dead workers' slots and admits the heads
            deployment = await self.redis.hget(self.prefix + "adm", token)
            if deployment is not None:
                return self._admitted(ticket, _text(deployment))
            if self.clock() >= ticket.deadline:
                answer = [_text(x) for x in await self._run("leave", token)]
                if answer[0] == "admitted":
                    return self._admitted(ticket, answer[1])
                self._mine.pop(token, None)
                waited = self.clock() - ticket.arrival
                raise self._rejected(Rejected(TIMEOUT, f"queued {waited:.0f} s, backend busy",
                                              self.retry_after(ticket.group), waited))

    def release(self, token: str) -> None:
        """Give back `token`'s slot or place (from any path, sync as a done callback); a second call does nothing."""
        if token not in self._mine:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._release(token))
        except RuntimeError:  # no loop (interpreter exit): the lease frees the slot within `lease` s
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, token: str) -> None:
        ticket = self._mine.pop(token, None)
        if ticket is None:
            return
        try:
            await self._run("release", token)
        except (OSError, ConnectionError, RedisError):
            return  # Redis away: the lease gives the slot back within `lease` s
        if ticket.admitted_at is not None:
            self.mean_hold += HOLD_EWMA * (self.clock() - ticket.admitted_at - self.mean_hold)

    async def move(self, token: str, allowed: Iterable[str]) -> str | None:
        ticket = self._mine.get(token)
        if ticket is None or ticket.deployment is None:
            return None
        moved = _text(await self._run("move", token, *allowed))
        if moved:
            ticket.deployment = moved
        return moved or None

    def deployment_of(self, token: str) -> str | None:
        ticket = self._mine.get(token)
        return ticket.deployment if ticket is not None else None

    # -- what is seen --------------------------------------------------------------------------------------
    async def snapshot(self) -> Snapshot:
        flat, waits = await self._run("snapshot")
        flat = [_text(x) for x in flat]
        slots, busy = {}, {}
        for i in range(0, len(flat), 3):
            slots[flat[i]], busy[flat[i]] = int(flat[i + 1]), int(flat[i + 2])
        waiting: dict[tuple[str, int], int] = {}
        for info in waits:
            group, priority = _text(info).split("\t")
            waiting[(group, int(priority))] = waiting.get((group, int(priority)), 0) + 1
        return Snapshot(slots, busy, waiting)

    def retry_after(self, group: str) -> int:
        """As LocalState's, from this worker's running mean of a slot's hold time (at least 1 s)."""
        return max(1, round(self.mean_hold))

    async def close(self) -> None:
        for task in (self._listener, self._renewer):
            if task is not None:
                task.cancel()
        await self.redis.aclose()

    # -- inside --------------------------------------------------------------------------------------------
    def _admitted(self, ticket: Ticket, deployment: str) -> Ticket:
        ticket.state, ticket.deployment, ticket.admitted_at = "admitted", deployment, self.clock()
        if self.on_admit is not None:
            self.on_admit(ticket)
        return ticket

    def _rejected(self, rejection: Rejected) -> Rejected:
        if self.on_reject is not None:
            self.on_reject(rejection)
        return rejection

    def _start_background(self) -> None:
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen())
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew_loop())

    async def _listen(self) -> None:
        """Wake this worker's waiter as soon as an admission is published (the poll is the fallback)."""
        while True:
            try:
                pubsub = self.redis.pubsub()
                await pubsub.subscribe(self.prefix + "admit")
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    future = self._futures.get(_text(message["data"]))
                    if future is not None and not future.done():
                        future.set_result(None)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis restarting: the waiters poll meanwhile; subscribe again
                await asyncio.sleep(1.0)

    async def _renew_loop(self) -> None:
        """Keep this worker's leases alive; a worker that dies stops renewing, and its slots free in `lease` s."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                if self._mine:
                    await self._run("renew", *list(self._mine))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis away for a moment: renew at the next turn
                pass
