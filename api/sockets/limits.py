"""Socket limits: a frame budget per connection and a cap on connections per user.

FrameBudget is a token bucket checked on every frame a client sends, before the frame is parsed: a
handful of float operations, no allocation, no I/O. Frames over the budget are refused (not
processed; positions in them are not acknowledged, so the client sends them again); a connection
that keeps sending while refused is flooding and is closed (docs/sockets.md, 4420).

ConnectionLimiter caps the open connections of one user. It always counts in process (this
replica); with Redis it also keeps one sorted set per user across replicas, a member per open
connection scored by its lease expiry on the Redis clock. Each replica renews the leases of its own
connections every third of the lease, so a replica that crashes stops renewing and its connections
stop counting within one lease. If Redis fails, the in-process cap still applies and a warning is
logged: losing the cross-replica cap for a while is better than refusing every driver.

Releases are batched: a closing connection queues its lease and waits for the batch it joins, and
one pipeline at a time removes every queued lease from Redis. When the server stops, all its
connections close at once; a call per lease would need a pooled Redis connection each and, past the
pool's size (redis-py: 100), fail with `Too many connections` and leave the leases counting until
they expire, refusing reconnecting drivers elsewhere (issue 17). A batch that fails is kept and
tried again with the next renewal and at close, with one warning per outage, not one per lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from domain.ids import uuid7
from domain.roles import Role
from plumbing.settings import Settings

log = logging.getLogger(__name__)

FLOOD_WINDOW_S = 10.0  # refused frames are counted over windows this long
NOTIFY_EVERY_S = 1.0  # at most one `rate_limited` error frame per connection this often

# take() verdicts
ALLOWED = 0
REFUSED = 1  # refused: tell the client (at most once per NOTIFY_EVERY_S)
REFUSED_QUIETLY = 2  # refused, the client was told a moment ago
FLOOD = 3  # refused, and too many refusals within FLOOD_WINDOW_S: close the connection


class FrameBudget:
    """`rate` frames per second, in bursts of up to `burst`; more than `flood` refused frames within
    FLOOD_WINDOW_S is a flood (0: never)."""

    __slots__ = ("burst", "flood", "notified_at", "rate", "refused", "stamp", "tokens", "window_end")

    def __init__(self, rate: float, burst: int, flood: int, now: float) -> None:
        self.rate, self.burst, self.flood = rate, float(burst), flood
        self.tokens, self.stamp = float(burst), now
        self.refused, self.window_end = 0, now + FLOOD_WINDOW_S
        self.notified_at = now - NOTIFY_EVERY_S

    def take(self, now: float) -> int:
        tokens = self.tokens + (now - self.stamp) * self.rate
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = (tokens if tokens < self.burst else self.burst) - 1.0
            return ALLOWED
        self.tokens = tokens
        if now >= self.window_end:
            self.refused, self.window_end = 0, now + FLOOD_WINDOW_S
        self.refused += 1
        if self.flood and self.refused > self.flood:
            return FLOOD
        if now - self.notified_at >= NOTIFY_EVERY_S:
            self.notified_at = now
            return REFUSED
        return REFUSED_QUIETLY

    def retry_after_s(self) -> float:
        """Seconds until the next frame fits the budget."""
        return max(0.0, (1.0 - self.tokens) / self.rate) if self.rate > 0 else 0.0


def frame_budget(settings: Settings, role: Role, now: float) -> FrameBudget | None:
    """The budget of a new connection of `role`, or None when its rate limit is off (0)."""
    if role is Role.DRIVER:
        rate, burst = settings.ws_driver_frames_per_second, settings.ws_driver_frame_burst
    else:
        rate, burst = settings.ws_dispatch_frames_per_second, settings.ws_dispatch_frame_burst
    if rate <= 0:
        return None
    return FrameBudget(rate, burst, settings.ws_flood_refused_frames, now)


# Count a user's live leases on every replica, drop expired ones, and add one if under the cap, in one
# atomic step on the Redis server's clock (one clock for every replica). Returns 1 if admitted.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
"""
# Renew the leases of many users: KEYS are their lease sets; ARGV[1] is the lease, then for each key in
# turn the number of its members and the members. Members are re-added if a sweep removed them, since
# they are still open. One call for hundreds of users (a script call per user cost the event loop more
# than the leases are worth: about 4% of the CPU at 2,000 connections).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local at = 2
for k = 1, #KEYS do
  local n = tonumber(ARGV[at])
  for i = at + 1, at + n do
    redis.call('ZADD', KEYS[k], now + lease, ARGV[i])
  end
  at = at + n + 1
  redis.call('PEXPIRE', KEYS[k], lease)
end
return 1
"""
RENEW_USERS_PER_CALL = 500


@dataclass(eq=False)
class Lease:
    user_id: uuid.UUID
    member: str
    counted: bool  # False when the role's cap is off
    shared: bool = False  # counted in Redis too


class ConnectionLimiter:
    def __init__(
        self, settings: Settings, redis_url: str | None = None, *, lease_s: float | None = None
    ) -> None:
        self.settings = settings
        self.lease_ms = int((lease_s or settings.ws_connection_lease_seconds) * 1000)
        self.prefix = f"{settings.redis_prefix}wsconn:"
        self.local: dict[uuid.UUID, int] = defaultdict(int)
        self.held: dict[uuid.UUID, set[str]] = defaultdict(set)  # leases this replica renews in Redis
        self.replica = uuid7().hex
        self.redis: aioredis.Redis | None = aioredis.Redis.from_url(redis_url) if redis_url else None
        self._acquire = self.redis.register_script(_ACQUIRE) if self.redis else None
        self._renew = self.redis.register_script(_RENEW) if self.redis else None
        self._task: asyncio.Task[None] | None = None
        # Leases to remove from Redis: the batch being gathered, the task sending batches (one at a
        # time), and the members of failed batches waiting for the next attempt.
        self._queued: dict[str, set[str]] = defaultdict(set)
        self._queued_done: asyncio.Future[bool] | None = None
        self._sender: asyncio.Task[None] | None = None
        # member -> when it has expired in Redis at the latest (loop time): no use retrying after that
        self._unreleased: dict[str, dict[str, float]] = defaultdict(dict)
        self._failing = False  # a release failed and is not yet retried successfully (warned once)

    def limit(self, role: Role) -> int:
        s = self.settings
        return s.ws_driver_max_connections if role is Role.DRIVER else s.ws_staff_max_connections

    def key(self, user_id: uuid.UUID) -> str:
        return f"{self.prefix}{user_id}"

    async def acquire(self, user_id: uuid.UUID, role: Role) -> Lease | None:
        """A lease for one more connection of the user, or None if they hold the maximum."""
        limit = self.limit(role)
        member = f"{self.replica}:{uuid7().hex}"
        if limit <= 0:
            return Lease(user_id, member, counted=False)
        if self.local[user_id] >= limit:
            return None
        self.local[user_id] += 1  # before any await: concurrent handshakes of one user see it
        shared = False
        if self._acquire is not None:
            try:
                admitted = await self._acquire(keys=[self.key(user_id)], args=[limit, member, self.lease_ms])
            except Exception as exc:  # fail open to the in-process cap, see the module docstring
                log.warning("connection limiter unavailable; counting on this replica only: %s", exc)
            else:
                if not admitted:
                    self._forget(user_id)
                    return None
                shared = True
                self.held[user_id].add(member)
        return Lease(user_id, member, counted=True, shared=shared)

    def _forget(self, user_id: uuid.UUID) -> None:
        self.local[user_id] -= 1
        if self.local[user_id] <= 0:
            del self.local[user_id]

    async def release(self, lease: Lease) -> None:
        if not lease.counted:
            return
        self._forget(lease.user_id)
        if lease.shared and self.redis is not None:
            members = self.held.get(lease.user_id)
            if members is not None:
                members.discard(lease.member)
                if not members:
                    del self.held[lease.user_id]
            # Shielded: a handler cancelled while waiting must not cancel the batch of the others.
            await asyncio.shield(self._queue({self.key(lease.user_id): [lease.member]}))

    def _queue(self, leases: Mapping[str, Iterable[str]]) -> asyncio.Future[bool]:
        """Add leases (members by key) to the next batch; its future is True once they are removed
        from Redis, False if the batch failed (they are then tried again later)."""
        for key, members in leases.items():
            self._queued[key].update(members)
        if self._queued_done is None:
            self._queued_done = asyncio.get_running_loop().create_future()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_batches(), name="socket-lease-releases")
        return self._queued_done

    async def _send_batches(self) -> None:
        """Remove the queued leases, batch after batch, until none are queued: whatever queues up while
        a batch is on its way goes in the next one, so releases use one Redis connection however many
        connections close at once. A failed batch joins the unreleased leases, with a warning for the
        first failure of an outage only; the renewal loop and close() try them again."""
        while self._queued:
            batch, done = self._queued, self._queued_done
            self._queued, self._queued_done = defaultdict(set), None
            exc: BaseException | None = None
            try:
                exc = await self._remove(batch)
            except BaseException as cancelled:  # the loop is going down: keep them for close()
                exc = cancelled
                raise
            finally:
                if exc is not None:
                    self._failed(batch, exc)
                if done is not None:
                    done.set_result(exc is None)

    def _failed(self, batch: Mapping[str, Collection[str]], exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "could not release %d socket connection lease(s), retrying every %.0f s until released "
                "or expired (further failures are not logged until a retry succeeds): %r",
                sum(len(m) for m in batch.values()),
                self.lease_ms / 3000,
                exc,
            )
        expired_by = asyncio.get_running_loop().time() + self.lease_ms / 1000
        for key, members in batch.items():
            self._unreleased[key].update(dict.fromkeys(members, expired_by))

    async def _remove(self, batch: Mapping[str, Collection[str]]) -> Exception | None:
        """ZREM every lease of `batch` in one pipeline (ZREM is idempotent: a retry is harmless)."""
        assert self.redis is not None
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, members in batch.items():
                    pipe.zrem(key, *members)
                await pipe.execute()
        except Exception as exc:
            return exc
        return None

    async def _retry_unreleased(self) -> None:
        """Send the leases of failed batches again."""
        retry = self._take_unreleased()
        if not retry:
            self._failing = False  # whatever failed has expired meanwhile
            return
        ok = await asyncio.shield(self._queue(retry))
        if ok and not self._unreleased:
            self._failing = False
            log.info("released the socket connection leases that had failed to release")

    def _take_unreleased(self) -> dict[str, set[str]]:
        """The leases of failed batches that may still be in Redis, by key; forgets all of them."""
        now = asyncio.get_running_loop().time()
        taken = {
            key: {m for m, by in members.items() if by > now} for key, members in self._unreleased.items()
        }
        self._unreleased = defaultdict(dict)
        return {key: members for key, members in taken.items() if members}

    def start(self) -> None:
        if self.redis is not None:
            self._task = asyncio.create_task(self._renew_forever(), name="socket-connection-leases")

    async def renew(self) -> None:
        """Extend the lease of every connection this replica holds, one script call per 500 users."""
        if self.redis is None or self._renew is None or not self.held:
            return
        held = [(user_id, list(members)) for user_id, members in self.held.items()]
        for start in range(0, len(held), RENEW_USERS_PER_CALL):
            chunk = held[start : start + RENEW_USERS_PER_CALL]
            args: list[Any] = [self.lease_ms]
            for _, members in chunk:
                args += [len(members), *members]
            await self._renew(keys=[self.key(user_id) for user_id, _ in chunk], args=args)
        # A connection that closed while the renewal was on its way was just added back: remove it.
        gone: dict[str, list[str]] = defaultdict(list)
        for user_id, members in held:
            current = self.held.get(user_id, ())
            gone[self.key(user_id)] += [m for m in members if m not in current]
        if any(gone.values()):
            await asyncio.shield(self._queue({k: m for k, m in gone.items() if m}))

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self.renew()
            except Exception as exc:
                log.warning("could not renew socket connection leases: %s", exc)
            await self._retry_unreleased()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.redis is not None:
            await self._release_all()
            await self.redis.aclose()

    async def _release_all(self) -> None:
        """At shutdown: remove every lease this replica still has in Redis in one call (failed ones, and
        any whose connection did not get to release it), so none waits out its expiry."""
        if self._sender is not None:  # a batch on its way: its failures join the unreleased
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._sender)
        leases = self._take_unreleased()
        for user_id, members in self.held.items():
            leases.setdefault(self.key(user_id), set()).update(members)
        self.held.clear()
        if not leases:
            return
        exc = await self._remove(leases)
        count = sum(len(m) for m in leases.values())
        if exc is None:
            if self._failing:
                log.info("released %d socket connection lease(s) that had failed to release", count)
        else:
            # One line per outage: at info if the outage was already reported at warning.
            log.log(
                logging.INFO if self._failing else logging.WARNING,
                "could not release %d socket connection lease(s) at shutdown; they expire within %.0f s: %r",
                count,
                self.lease_ms / 1000,
                exc,
            )
        self._failing = False
