"""Stopping `waybill sockets` (SIGTERM) with hundreds of connections gives back every connection lease.

Each open socket holds a lease in Redis that counts it against its user's cap across replicas
(api/sockets/limits.py). When the server stops, all its connections close at once; their leases must
be gone from Redis when the process has exited, not 60 s later when they would expire, or drivers
reconnecting to another replica are refused (4409) for a minute. Issue 17 saw 42 of 200 releases
fail with Redis `Too many connections`: one release call per closing socket overran the client's
connection pool (redis-py's default size, 100, which this test leaves as it is).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection

from domain.roles import Role
from tests.conftest import REDIS_URL
from tests.e2e.test_dev_command import WAYBILL
from tests.e2e.test_sockets_sigterm import GRACE_S, seeded_fleet, sockets_env, wait_healthy
from tests.integration.sockets.support import access, open_socket
from tests.support import free_port

pytestmark = pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL not set (leases exist only in Redis)")

DRIVERS = 240  # well over the Redis client's 100 pooled connections
OPENING = 20  # handshakes in flight at a time while connecting


async def leases_in_redis(r: aioredis.Redis, prefix: str) -> int:
    keys = [k async for k in r.scan_iter(match=f"{prefix}wsconn:*", count=1000)]
    return sum([await r.zcard(k) for k in keys])


async def test_sigterm_releases_every_connection_lease_at_once(sqlite_url: str, tmp_path: Path) -> None:
    fleet, key, tokens = await seeded_fleet(sqlite_url, DRIVERS)
    port = free_port()
    env = sockets_env(sqlite_url, tmp_path, key, port, WAYBILL_SOCKETS_METRICS_PORT=str(free_port()))
    prefix = env["WAYBILL_REDIS_PREFIX"]
    r = aioredis.Redis.from_url(str(REDIS_URL))
    proc = subprocess.Popen(
        [WAYBILL, "sockets"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sockets: list[ClientConnection] = []
    try:
        await wait_healthy(port, proc)
        gate = asyncio.Semaphore(OPENING)

        async def connect(user: uuid.UUID) -> ClientConnection:
            async with gate:
                token = access(tokens, fleet.org, user, Role.DRIVER)
                ws, ready = await open_socket(f"ws://127.0.0.1:{port}/ws/driver", token)
                assert ready["type"] == "ready", ready
                return ws

        sockets = list(await asyncio.gather(*(connect(u) for u in fleet.driver_users)))
        held = await leases_in_redis(r, prefix)
        assert held == DRIVERS, f"{held} leases in Redis for {DRIVERS} open sockets"

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(GRACE_S):
            await asyncio.gather(*(ws.wait_closed() for ws in sockets))
            while proc.poll() is None:
                await asyncio.sleep(0.05)
        # Right after exit: nothing left to expire later.
        left = await leases_in_redis(r, prefix)
        out = proc.communicate()[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for k in [k async for k in r.scan_iter(match=f"{prefix}*", count=1000)]:
            await r.delete(k)
        await r.aclose()

    assert proc.returncode == 0, out
    assert left == 0, f"{left} of {DRIVERS} leases left in Redis after exit, to wait out their expiry"
    logs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    warnings = [e["msg"] for e in logs if e.get("level") in ("warning", "error") and "lease" in e["msg"]]
    assert not warnings, warnings[:3]
    assert {ws.close_code for ws in sockets} == {1001}
