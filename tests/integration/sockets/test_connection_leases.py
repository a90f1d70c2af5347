"""Connection leases in Redis (api/sockets/limits.py) when many connections close at once, and when
Redis is unreachable as they do (issue 17).

The limiter talks to the real Redis through a loopback TCP relay that counts the connections it
carries and can be cut and restored, standing in for a Redis outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from api.sockets import limits
from api.sockets.limits import ConnectionLimiter, Lease
from domain.roles import Role
from tests.conftest import REDIS_URL
from tests.support import free_port, test_settings

pytestmark = pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL not set (leases exist only in Redis)")

USERS = 100
PER_USER = 3  # the driver cap: 300 leases, three times the Redis client's pool of 100
LEASE_S = 6.0  # long enough to outlive each test's checks; retries come every third of it


class Relay:
    """A TCP relay from a loopback port to Redis: counts connections, can be cut and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones, like a Redis that went away."""
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.close()
        await self.server.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        try:
            await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        finally:
            self.writers -= {writer, up_writer}

    def url(self) -> str:
        assert REDIS_URL
        db = urlsplit(REDIS_URL).path or "/0"
        return f"redis://127.0.0.1:{self.port}{db}"


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    assert REDIS_URL
    parts = urlsplit(REDIS_URL)
    r = Relay((parts.hostname or "127.0.0.1", parts.port or 6379))
    await r.start()
    yield r
    with contextlib.suppress(Exception):
        await r.cut()


@pytest.fixture
async def direct() -> AsyncIterator[aioredis.Redis]:
    r = aioredis.Redis.from_url(str(REDIS_URL))
    yield r
    await r.aclose()


def make_limiter(relay: Relay) -> ConnectionLimiter:
    prefix = f"waybill-test-leases-{uuid.uuid4().hex[:8]}:"
    settings = test_settings(redis_prefix=prefix, ws_driver_max_connections=PER_USER)
    return ConnectionLimiter(settings, relay.url(), lease_s=LEASE_S)


async def take_leases(limiter: ConnectionLimiter) -> list[Lease]:
    leases = []
    for _ in range(USERS):
        user = uuid.uuid4()
        for _ in range(PER_USER):
            lease = await limiter.acquire(user, Role.DRIVER)
            assert lease is not None
            assert lease.shared
            leases.append(lease)
    return leases


async def in_redis(r: aioredis.Redis, limiter: ConnectionLimiter) -> int:
    keys = [k async for k in r.scan_iter(match=f"{limiter.prefix}*", count=1000)]
    return sum([await r.zcard(k) for k in keys])


def release_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == limits.__name__ and r.levelno >= logging.WARNING and "release" in r.getMessage()
    ]


async def test_many_closing_connections_release_in_one_go(
    relay: Relay, direct: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """300 connections closing at once: every lease is gone when its release returns, over a couple of
    Redis connections, with the client's pool at its default size."""
    limiter = make_limiter(relay)
    assert limiter.redis is not None
    try:
        leases = await take_leases(limiter)
        assert await in_redis(direct, limiter) == USERS * PER_USER
        before = relay.accepted
        await asyncio.gather(*(limiter.release(lease) for lease in leases))
        left = await in_redis(direct, limiter)
        opened = relay.accepted - before
        pool_size = limiter.redis.connection_pool.max_connections
    finally:
        await limiter.close()
    assert left == 0, f"{left} of {USERS * PER_USER} leases still in Redis after their release"
    assert opened <= 1, f"the releases opened {opened} more Redis connections"
    assert pool_size == 100  # redis-py's default: the fix is not a bigger pool
    assert not release_warnings(caplog)
    assert not limiter.local
    assert not limiter.held


async def test_releases_during_an_outage_are_retried_and_warned_once(
    relay: Relay, direct: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis unreachable while 300 connections close: one warning, not 300; the leases stay queued and
    are removed by the next renewal round once Redis is back, well before they would expire."""
    limiter = make_limiter(relay)
    limiter.start()
    try:
        leases = await take_leases(limiter)
        taken = time.monotonic()
        await relay.cut()
        await asyncio.gather(*(limiter.release(lease) for lease in leases))  # none raises
        assert await in_redis(direct, limiter) == USERS * PER_USER  # not released, not forgotten
        assert len(release_warnings(caplog)) == 1, release_warnings(caplog)
        await relay.start()
        async with asyncio.timeout(LEASE_S / 3 + 2):
            while await in_redis(direct, limiter):
                await asyncio.sleep(0.05)
        gone_after = time.monotonic() - taken
    finally:
        await limiter.close()
    assert gone_after < LEASE_S - 1, f"gone after {gone_after:.1f}s: they expired rather than being released"
    assert len(release_warnings(caplog)) == 1, release_warnings(caplog)


async def test_shutdown_during_an_outage_warns_once(
    relay: Relay, direct: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis unreachable at shutdown: the releases and the final attempt in close() log one warning."""
    limiter = make_limiter(relay)
    try:
        leases = await take_leases(limiter)
        await relay.cut()
        await asyncio.gather(*(limiter.release(lease) for lease in leases))
    finally:
        await limiter.close()
    assert len(release_warnings(caplog)) == 1, release_warnings(caplog)
    # Nothing else can remove them now: they expire (the test's prefix is its own).
    assert await in_redis(direct, limiter) == USERS * PER_USER


async def test_close_releases_the_leases_of_connections_still_open(
    relay: Relay, direct: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """close() is called once the server has closed every socket: a lease still held (a handler that
    never reached its release) goes in the same final call instead of waiting out its expiry."""
    limiter = make_limiter(relay)
    leases = await take_leases(limiter)
    for lease in leases[:10]:
        await limiter.release(lease)
    assert await in_redis(direct, limiter) == len(leases) - 10
    await limiter.close()
    assert await in_redis(direct, limiter) == 0
    assert not release_warnings(caplog)
