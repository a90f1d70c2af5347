"""Redis killed under load and started again empty (no persistence), with drivers streaming, a
dispatcher watching and clients creating deliveries.

What recovers by itself, and is asserted: /ready says the cache is failing during the outage and
ready again after it; the API answers (never a 500: while Redis is gone a
request that needs it is refused with a 5xx problem of its own, 503), creates succeed again,
drivers keep or regain their sockets and every position acknowledged is stored, and live positions
reach dispatchers again, on a connection that was open during the outage (the fan-out subscribes
again) and on a new one. Nothing acknowledged is lost: positions and deliveries live in PostgreSQL
and Temporal, not in Redis.

What is lost by design (Redis holds only derived or short-lived data): the latest position of each
vehicle (until its next fix), live messages published while Redis was away (a dispatcher misses
those positions and changes; its timeline and the history are complete), rate-limit windows and
cached users and tokens (rebuilt from PostgreSQL), socket connection leases, and the access-token
denylist (a token revoked before the outage works again until it expires: at most
WAYBILL_ACCESS_TOKEN_TTL_SECONDS).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from domain.roles import Role
from tests.faults.report import Figures
from tests.faults.stack import FAULTS, Creates, Stack, get
from tests.integration.sockets.support import access, fix, make_fleet, open_socket, recv_until, staff_token

pytestmark = FAULTS

DRIVERS = 5
OUTAGE_S = 3.0
RECOVERY_S = 30.0  # from Redis answering again until everything above works again


@dataclass
class Feed:
    """A driver that streams a position every 0.2 s and connects again whenever its socket closes."""

    token: str
    vehicle_id: uuid.UUID
    sent: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)
    closes: Counter[str] = field(default_factory=Counter)

    async def run(self, url: str, stop: asyncio.Event) -> None:
        seq = 0
        while not stop.is_set():
            try:
                ws, ready = await open_socket(f"{url}/ws/driver", self.token)
            except OSError as exc:
                self.closes[f"connect {type(exc).__name__}"] += 1
                await asyncio.sleep(0.5)
                continue
            reader = asyncio.create_task(self._acks(ws))
            try:
                if ready["type"] != "ready":
                    self.closes[f"refused {ready.get('code')}"] += 1
                    await asyncio.sleep(0.5)
                    continue
                while not stop.is_set():
                    seq += 1
                    await ws.send(json.dumps({"type": "position", **fix(seq, 52.5 + seq * 1e-5, 13.4)}))
                    self.sent.add(seq)
                    await asyncio.sleep(0.2)
            except ConnectionClosed:
                self.closes[f"closed {ws.close_code}"] += 1
                await asyncio.sleep(0.5)
            finally:
                await asyncio.sleep(0.5)  # the last acks
                await ws.close()
                await reader

    async def _acks(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                msg = json.loads(raw)
                if msg["type"] == "ack":
                    self.acked.update(msg["seqs"])
        except ConnectionClosed:
            pass


async def positions_arrive(ws: ClientConnection, vehicles: set[str], timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            while True:
                msg = json.loads(await ws.recv())
                if msg["type"] == "positions" and {p["vehicle_id"] for p in msg["positions"]} & vehicles:
                    return True
    except (TimeoutError, ConnectionClosed):
        return False


async def watch(url: str, token: str) -> ClientConnection:
    ws, ready = await open_socket(f"{url}/ws/dispatch", token)
    assert ready["type"] == "ready", ready
    await ws.send(json.dumps({"type": "subscribe", "topic": "fleet"}))
    await recv_until(ws, "subscribed")
    return ws


async def test_redis_restarted_mid_load_degrades_and_recovers(up: Stack) -> None:
    fleet = await make_fleet(up.sessionmaker, DRIVERS)
    headers = up.headers(fleet)
    figures = Figures("redis restarted mid-load")
    creates = Creates(headers)
    vehicles = {str(v) for v in fleet.vehicles}
    feeds = [
        Feed(access(up.tokens, fleet.org, u, Role.DRIVER), v)
        for u, v in zip(fleet.driver_users, fleet.vehicles, strict=True)
    ]
    stop = asyncio.Event()
    running = [asyncio.create_task(f.run(up.ws_url, stop)) for f in feeds]
    statuses: Counter[str] = Counter()
    old = await watch(up.ws_url, staff_token(up.tokens, fleet))
    try:
        async with up.http() as http:

            async def load() -> None:
                while not stop.is_set():
                    await creates.send(http, creates.new())
                    statuses[str((await get(http, "/api/v1/deliveries?limit=5", headers)).status)] += 1
                    await asyncio.sleep(0.1)

            loader = asyncio.create_task(load())
            assert await positions_arrive(old, vehicles, 10), "no live positions before the outage"
            during = len(creates.seconds)
            up.redis.kill()
            await asyncio.sleep(OUTAGE_S / 2)
            degraded = await get(http, "/ready", {})  # the outage is seen: not ready, cache failing
            await asyncio.sleep(OUTAGE_S / 2)
            up.redis.start()
            await up.redis.wait_ready()
            back = time.monotonic()

            async def recovered() -> bool:
                ready = await get(http, "/ready", {})
                made = await creates.send(http, creates.new())
                return ready.status == 200 and made is not None and made.status == 201

            while not await recovered():
                assert time.monotonic() - back < RECOVERY_S, (up.api.output()[-3000:], creates.statuses)
                await asyncio.sleep(0.5)
            figures.extra["api recovered after"] = f"{time.monotonic() - back:.1f} s"
            slowest = max(creates.seconds[during:], default=0.0)
            figures.extra["slowest create around the outage"] = f"{slowest:.1f} s"
            old_resumed = await positions_arrive(old, vehicles, RECOVERY_S)
            fresh = await watch(up.ws_url, staff_token(up.tokens, fleet))
            fresh_gets = await positions_arrive(fresh, vehicles, 10)
            await fresh.close()
            figures.extra["live positions again after"] = f"{time.monotonic() - back:.1f} s"
            stop.set()
            await asyncio.gather(loader, *running)
            await creates.retry_all(http)
    finally:
        stop.set()
        await old.close()
        for task in running:
            task.cancel()

    lost = await up.unstored(fleet.org, feeds)
    figures.positions_lost = sum(len(v) for v in lost.values())
    figures.problems += [f"{v}: acknowledged, not stored {seqs[:10]}" for v, seqs in lost.items()]
    figures.extra["api answers"] = str(dict(creates.statuses + statuses))
    figures.extra["driver closes"] = str(dict(sum((f.closes for f in feeds), Counter())))
    await up.audit(figures, fleet.org, creates.acknowledged, creates.answered)
    assert not {s for s in creates.statuses + statuses if s.startswith("5") and s != "503"}, statuses
    assert degraded.status == 503, degraded.body
    assert "cache" in degraded.body["failing"], degraded.body
    assert old_resumed, "the dispatcher connected during the outage got no live positions afterwards"
    assert fresh_gets, "a dispatcher connected after the outage got no live positions"
    assert all(f.acked for f in feeds)
    assert not creates.unanswered, creates.statuses
    figures.assert_clean()
