"""Socket abuse over real loopback connections (issue 5): a forged origin, no auth frame, an expired
token (at the handshake and mid-connection), an oversized frame, a frame flood and too many
connections are each refused or closed with their documented code, while a well-behaved driver on
the same server keeps getting its positions acknowledged, during the attack and after it.
In-process bus and, when REDIS_URL is set, Redis (connection caps across two replicas)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api.resources import Resources
from api.security.tokens import TokenType
from api.sockets import dispatch
from api.sockets.frames import (
    CLOSE_AUTH_TIMEOUT,
    CLOSE_FLOOD,
    CLOSE_FORBIDDEN,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TOO_MANY_CONNECTIONS,
    CLOSE_UNAUTHENTICATED,
)
from api.sockets.limits import ConnectionLimiter
from db.models import User
from domain.roles import Role
from tests.conftest import REDIS_URL
from tests.integration.sockets.conftest import BUSES
from tests.integration.sockets.support import Fleet, driver_token, make_fleet, open_socket, recv_until
from tests.support import free_port, test_settings
from waybill.services import SocketService

ORIGIN = "https://console.waybill.example"
MAX_FRAME = 16 * 1024
ACK_LATENCY_S = 1.0  # a served client's positions are acknowledged within this, even under attack


@dataclass
class Secure:
    url: str
    resources: Resources
    service: SocketService
    bus: str


def _settings(sqlite_url: str, bus: str, prefix: str) -> Any:
    return test_settings(
        database_url=sqlite_url,
        redis_url=REDIS_URL if bus == "redis" else None,
        redis_prefix=prefix,
        tracking_history_flush_ms=30,
        tracking_publish_ms=10,
        ws_auth_timeout_seconds=0.5,
        ws_allowed_origins=[ORIGIN],
        ws_max_frame_bytes=MAX_FRAME,
        # The documented defaults, spelled out: the tests below count against them.
        ws_driver_frames_per_second=50.0,
        ws_driver_frame_burst=100,
        ws_flood_refused_frames=200,
        ws_driver_max_connections=3,
        ws_staff_max_connections=5,
    )


@pytest.fixture(scope="module", params=BUSES)
async def secure(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[Secure]:
    prefix = f"waybill-test-socksec-{uuid.uuid4().hex[:8]}:"  # Redis may be shared with other runs
    resources = await Resources.open(_settings(sqlite_url, request.param, prefix))
    port = free_port()
    service = SocketService(resources, "127.0.0.1", port)
    await service.start()
    yield Secure(f"ws://127.0.0.1:{port}", resources, service, request.param)
    await service.stop()
    await resources.close()


@dataclass
class Bystander:
    """A well-behaved driver: a position every 50 ms, each timed until its acknowledgement."""

    ws: ClientConnection
    sent: dict[int, float] = field(default_factory=dict)
    acked: dict[int, float] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, secure: Secure) -> Bystander:
        fleet = await make_fleet(secure.resources.sessionmaker, 1)
        ws, ready = await open_socket(
            f"{secure.url}/ws/driver", driver_token(secure.resources.tokens, fleet, 0)
        )
        assert ready["type"] == "ready"
        me = cls(ws)
        me.tasks = [asyncio.create_task(me._send()), asyncio.create_task(me._read())]
        return me

    async def _send(self) -> None:
        seq = 0
        while True:
            seq += 1
            p = {
                "seq": seq,
                "recorded_at": datetime.now(UTC).isoformat(),
                "lat": 48.1 + seq * 1e-6,
                "lon": 11.5,
            }
            self.sent[seq] = time.monotonic()
            await self.ws.send(json.dumps({"type": "position", **p, "accuracy_m": 5.0}))
            await asyncio.sleep(0.05)

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if msg["type"] == "ack":
                now = time.monotonic()
                for s in msg["seqs"]:
                    self.acked.setdefault(s, now)

    async def check(self, since: float) -> None:
        """Every position sent from `since` until now is acknowledged within the latency bound."""
        until = max(time.monotonic(), since + 0.5)  # a short attack: judge the half second from its start
        await asyncio.sleep(until - time.monotonic() + ACK_LATENCY_S + 0.1)
        assert not any(t.done() for t in self.tasks), "the bystander's connection ended"
        due = [s for s, t in self.sent.items() if since <= t <= until]
        assert len(due) >= 3, "the bystander sent too little to judge"
        lags = {s: round(self.acked[s] - self.sent[s], 3) if s in self.acked else None for s in due}
        late = {s: lag for s, lag in lags.items() if lag is None or lag > ACK_LATENCY_S}
        assert not late, f"the bystander was not served: {late}"

    async def served_after(self, since: float, seconds: float = 1.0) -> None:
        """Keeps being served after the attack too."""
        await asyncio.sleep(seconds)
        await self.check(since)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await self.ws.close()


@pytest.fixture
async def bystander(secure: Secure) -> AsyncIterator[Bystander]:
    me = await Bystander.start(secure)
    await asyncio.sleep(0.3)
    yield me
    await me.stop()


async def closed(ws: ClientConnection, timeout: float = 10.0) -> tuple[list[dict[str, Any]], int | None]:
    """Frames received until the server closed the connection, and its close code."""
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout):
            async for raw in ws:
                frames.append(json.loads(raw))
    return frames, ws.close_code


def errors(frames: list[dict[str, Any]]) -> list[str]:
    return [f["code"] for f in frames if f["type"] == "error"]


async def test_forged_origin_is_refused_at_the_handshake(secure: Secure, bystander: Bystander) -> None:
    t0 = time.monotonic()
    while time.monotonic() < t0 + 1.0:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{secure.url}/ws/driver", origin="https://evil.example"):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 403
    await bystander.check(t0)
    # The allowed origin (and a client without one, e.g. a phone app) gets through to authentication.
    for origin in (ORIGIN, None):
        async with connect(f"{secure.url}/ws/driver", origin=origin) as ws:  # type: ignore[arg-type]
            frames, code = await closed(ws)
        assert (errors(frames), code) == (["auth_timeout"], CLOSE_AUTH_TIMEOUT)
    await bystander.served_after(t0)


async def test_no_auth_frame_is_closed_4408(secure: Secure, bystander: Bystander) -> None:
    t0 = time.monotonic()
    silent = [await connect(f"{secure.url}/ws/dispatch") for _ in range(20)]
    results = await asyncio.gather(*(closed(ws, timeout=5) for ws in silent))
    for frames, code in results:
        assert (errors(frames), code) == (["auth_timeout"], CLOSE_AUTH_TIMEOUT)
    await bystander.check(t0)
    await bystander.served_after(t0)


def _token_expiring_in(secure: Secure, fleet: Fleet, seconds: float, user: int = 0) -> str:
    tokens = secure.resources.tokens
    ttl = tokens.ttl(TokenType.ACCESS)
    return tokens.issue(
        user_id=fleet.driver_users[user],
        organization_id=fleet.org,
        role=Role.DRIVER,
        token_type=TokenType.ACCESS,
        now=datetime.now(UTC) - ttl + timedelta(seconds=seconds),
    ).token


async def test_expired_token_is_refused_or_closed_4419(secure: Secure, bystander: Bystander) -> None:
    res = secure.resources
    fleet = await make_fleet(res.sessionmaker, 3)
    t0 = time.monotonic()
    # At the handshake.
    ws, first = await open_socket(f"{secure.url}/ws/driver", _token_expiring_in(secure, fleet, -3600))
    frames, code = await closed(ws)
    assert (first["code"], code) == ("token_expired", CLOSE_TOKEN_EXPIRED)
    # Mid-connection: valid for ~2 more seconds. One client lets it run out, one re-authenticates.
    short = _token_expiring_in(secure, fleet, 2.5)
    lapsing, ready = await open_socket(f"{secure.url}/ws/driver", short)
    exp = datetime.fromisoformat(ready["expires_at"])
    staying, _ = await open_socket(f"{secure.url}/ws/driver", _token_expiring_in(secure, fleet, 2.5, user=1))
    fresh = driver_token(res.tokens, fleet, 1)
    await staying.send(json.dumps({"type": "auth", "token": fresh}))
    answer = await recv_until(staying, "reauthenticated")
    assert datetime.fromisoformat(answer["expires_at"]) > datetime.now(UTC) + timedelta(minutes=5)

    frames, code = await closed(lapsing)
    assert (errors(frames), code) == (["token_expired"], CLOSE_TOKEN_EXPIRED)
    assert datetime.now(UTC) >= exp  # closed because the token ran out, not earlier
    await staying.send(json.dumps({"type": "ping", "id": 1}))
    assert (await recv_until(staying, "pong"))["id"] == 1  # past the first token's expiry, still open
    await staying.close()
    await bystander.check(t0)
    await bystander.served_after(t0)


async def test_reauthentication_must_be_the_same_user_and_not_revoked(
    secure: Secure, bystander: Bystander
) -> None:
    res = secure.resources
    fleet = await make_fleet(res.sessionmaker, 3)
    t0 = time.monotonic()
    # Another user's token (even of the same organization and role): 4403.
    ws, _ = await open_socket(f"{secure.url}/ws/driver", driver_token(res.tokens, fleet, 0))
    await ws.send(json.dumps({"type": "auth", "token": driver_token(res.tokens, fleet, 1)}))
    frames, code = await closed(ws)
    assert (errors(frames), code) == (["forbidden"], CLOSE_FORBIDDEN)
    # A garbage token: 4401.
    ws, _ = await open_socket(f"{secure.url}/ws/driver", driver_token(res.tokens, fleet, 1))
    await ws.send(json.dumps({"type": "auth", "token": "garbage"}))
    frames, code = await closed(ws)
    assert (errors(frames), code) == (["invalid_token"], CLOSE_UNAUTHENTICATED)
    # The user was deactivated while connected: their next re-authentication is refused (4401).
    user = fleet.driver_users[2]
    ws, _ = await open_socket(f"{secure.url}/ws/driver", driver_token(res.tokens, fleet, 2))
    async with res.sessionmaker() as session:
        await session.execute(update(User).where(User.id == user).values(active=False))
        await session.commit()
    await ws.send(json.dumps({"type": "auth", "token": driver_token(res.tokens, fleet, 2)}))
    frames, code = await closed(ws)
    assert (errors(frames), code) == (["invalid_token"], CLOSE_UNAUTHENTICATED)
    await bystander.check(t0)
    await bystander.served_after(t0)


async def test_oversized_frame_is_closed_1009(secure: Secure, bystander: Bystander) -> None:
    res = secure.resources
    fleet = await make_fleet(res.sessionmaker, 1)
    t0 = time.monotonic()
    while time.monotonic() < t0 + 1.0:
        ws, _ = await open_socket(f"{secure.url}/ws/driver", driver_token(res.tokens, fleet, 0))
        await ws.send(json.dumps({"type": "position", "seq": 1, "note": "x" * (MAX_FRAME + 1)}))
        frames, code = await closed(ws)
        assert code == 1009  # message too big
        assert not any(f["type"] == "ack" for f in frames)
    # Just under the limit is fine.
    ws, _ = await open_socket(f"{secure.url}/ws/driver", driver_token(res.tokens, fleet, 0))
    await ws.send(json.dumps({"type": "ping", "id": 2, "note": "x" * (MAX_FRAME - 100)}))
    assert (await recv_until(ws, "pong"))["id"] == 2
    await ws.close()
    await bystander.check(t0)
    await bystander.served_after(t0)


def _position(seq: int) -> str:
    p = {"seq": seq, "recorded_at": datetime.now(UTC).isoformat(), "lat": 40.0 + seq * 1e-7, "lon": 3.0}
    return json.dumps({"type": "position", **p, "accuracy_m": 5.0})


async def test_frames_over_the_rate_are_refused_not_processed(secure: Secure, bystander: Bystander) -> None:
    """150 frames at once against a burst of 100: about 100 acknowledged, the rest refused with one
    `rate_limited` error; the connection stays open and is served again once the budget refills."""
    res = secure.resources
    fleet = await make_fleet(res.sessionmaker, 1)
    ws, _ = await open_socket(f"{secure.url}/ws/driver", driver_token(res.tokens, fleet, 0))
    t0 = time.monotonic()
    for seq in range(1, 151):
        await ws.send(_position(seq))
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1.5):
            async for raw in ws:
                frames.append(json.loads(raw))
    acked = {s for f in frames if f["type"] == "ack" for s in f["seqs"]}
    assert 100 <= len(acked) < 130, len(acked)  # the burst, plus what refilled at 50/s meanwhile
    limited = [f for f in frames if f["type"] == "error"]
    assert [f["code"] for f in limited] == ["rate_limited"]
    assert limited[0]["retry_after_ms"] > 0
    await asyncio.sleep(0.5)
    await ws.send(_position(151))
    assert (await recv_until(ws, "ack"))["seqs"] == [151]
    await ws.close()
    await bystander.check(t0)


async def test_frame_flood_is_closed_4420(secure: Secure, bystander: Bystander) -> None:
    res = secure.resources
    floods_before = refused_count(secure, "flood")
    fleet = await make_fleet(res.sessionmaker, 1)
    ws, _ = await open_socket(f"{secure.url}/ws/driver", driver_token(res.tokens, fleet, 0))
    t0 = time.monotonic()
    sent = 0

    async def flood() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionClosed):
            for seq in range(1, 5001):
                await ws.send(_position(seq))
                sent = seq
                if seq % 20 == 0:
                    await asyncio.sleep(0)  # let the server (same event loop) read

    flooding = asyncio.create_task(flood())
    frames, code = await closed(ws)
    await flooding
    elapsed = time.monotonic() - t0
    assert code == CLOSE_FLOOD
    assert errors(frames)[0] == "rate_limited"
    assert errors(frames)[-1] == "flood"
    assert sent < 5000  # cut off long before the end
    acked = {s for f in frames if f["type"] == "ack" for s in f["seqs"]}
    assert len(acked) <= 100 + 50 * elapsed + 1  # refused frames were never processed
    assert refused_count(secure, "flood") == floods_before + 1
    assert refused_count(secure, "rate_limited") > 0
    await bystander.check(t0)
    await bystander.served_after(t0)


def refused_count(secure: Secure, reason: str) -> float:
    registry = secure.service.sockets.ctx.metrics.registry
    return registry.get_sample_value("waybill_socket_refused_total", {"reason": reason}) or 0.0


async def _refused(url: str, token: str) -> tuple[list[dict[str, Any]], int | None]:
    ws, first = await open_socket(url, token)
    frames, code = await closed(ws)
    return [first, *frames], code


async def test_connections_per_user_are_capped_4409(secure: Secure, bystander: Bystander) -> None:
    res = secure.resources
    caps_before = refused_count(secure, "too_many_connections")
    fleet = await make_fleet(res.sessionmaker, 1)
    t0 = time.monotonic()
    driver_url, dispatch_url = f"{secure.url}/ws/driver", f"{secure.url}/ws/dispatch"
    token = driver_token(res.tokens, fleet, 0)
    drivers = [(await open_socket(driver_url, token))[0] for _ in range(3)]
    frames, code = await _refused(driver_url, token)
    assert (errors(frames), code) == (["too_many_connections"], CLOSE_TOO_MANY_CONNECTIONS)
    for ws in drivers:  # the admitted ones are untouched
        await ws.send(json.dumps({"type": "ping", "id": 3}))
        assert (await recv_until(ws, "pong"))["id"] == 3
    # Closing one frees its place.
    await drivers.pop().close()
    await asyncio.sleep(0.2)
    ws, ready = await open_socket(driver_url, token)
    assert ready["type"] == "ready"
    drivers.append(ws)
    # Staff: 5 each. Another user of the same organization is not affected.
    staff = [(await open_socket(dispatch_url, staff_token(res, fleet, Role.DISPATCHER)))[0] for _ in range(5)]
    frames, code = await _refused(dispatch_url, staff_token(res, fleet, Role.DISPATCHER))
    assert code == CLOSE_TOO_MANY_CONNECTIONS
    viewer, ready = await open_socket(dispatch_url, staff_token(res, fleet, Role.VIEWER))
    assert ready["type"] == "ready"
    assert refused_count(secure, "too_many_connections") == caps_before + 2
    await bystander.check(t0)
    for ws in (*drivers, *staff, viewer):
        await ws.close()
    await bystander.served_after(t0)


def staff_token(res: Resources, fleet: Fleet, role: Role) -> str:
    return res.tokens.issue(
        user_id=fleet.tenant.user_ids[role], organization_id=fleet.org, role=role, token_type=TokenType.ACCESS
    ).token


async def test_connection_cap_spans_replicas_through_redis(
    secure: Secure, bystander: Bystander, sqlite_url: str
) -> None:
    if secure.bus != "redis":
        pytest.skip("across replicas only with Redis; in process each replica counts its own")
    res = secure.resources
    other = SocketService(res, "127.0.0.1", free_port())  # a second replica on the same Redis
    await other.start()
    try:
        fleet = await make_fleet(res.sessionmaker, 1)
        token = driver_token(res.tokens, fleet, 0)
        t0 = time.monotonic()
        here = [(await open_socket(f"{secure.url}/ws/driver", token))[0] for _ in range(2)]
        there_url = f"ws://127.0.0.1:{other.port}/ws/driver"
        there, ready = await open_socket(there_url, token)
        assert ready["type"] == "ready"
        frames, code = await _refused(there_url, token)
        assert (errors(frames), code) == (["too_many_connections"], CLOSE_TOO_MANY_CONNECTIONS)
        frames, code = await _refused(f"{secure.url}/ws/driver", token)
        assert code == CLOSE_TOO_MANY_CONNECTIONS
        await there.close()
        await asyncio.sleep(0.2)
        again, ready = await open_socket(there_url, token)
        assert ready["type"] == "ready"
        for ws in (*here, again):
            await ws.close()
        await bystander.check(t0)
    finally:
        await other.stop()


async def test_a_crashed_replica_stops_counting_after_its_lease(secure: Secure, bystander: Bystander) -> None:
    if secure.bus != "redis":
        pytest.skip("leases exist only in Redis")
    res = secure.resources
    fleet = await make_fleet(res.sessionmaker, 1)
    user, token = fleet.driver_users[0], driver_token(res.tokens, fleet, 0)
    t0 = time.monotonic()
    # A replica that holds three connections of the user and renews their 1.2 s leases...
    alive = ConnectionLimiter(res.settings, REDIS_URL, lease_s=1.2)
    alive.start()
    leases = [await alive.acquire(user, Role.DRIVER) for _ in range(3)]
    assert all(lease is not None and lease.shared for lease in leases)
    await asyncio.sleep(2.0)  # longer than a lease: renewed meanwhile
    frames, code = await _refused(f"{secure.url}/ws/driver", token)
    assert code == CLOSE_TOO_MANY_CONNECTIONS
    # ...then crashes: no release, no more renewals. Within a lease its connections no longer count.
    assert alive._task is not None
    alive._task.cancel()
    await asyncio.sleep(1.5)
    ws, ready = await open_socket(f"{secure.url}/ws/driver", token)
    assert ready["type"] == "ready"
    await ws.close()
    await alive.close()
    await bystander.check(t0)


async def test_subscriptions_per_socket_are_capped(
    secure: Secure, bystander: Bystander, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch, "MAX_SUBSCRIPTIONS", 3)
    res = secure.resources
    fleet = await make_fleet(res.sessionmaker, 4)
    ws, _ = await open_socket(f"{secure.url}/ws/dispatch", staff_token(res, fleet, Role.DISPATCHER))
    t0 = time.monotonic()

    async def subscribe(vehicle: uuid.UUID, kind: str = "subscribe") -> dict[str, Any]:
        await ws.send(json.dumps({"type": kind, "topic": "vehicle", "id": str(vehicle)}))
        return json.loads(await ws.recv())  # type: ignore[no-any-return]

    for vehicle in fleet.vehicles[:3]:
        assert (await subscribe(vehicle))["type"] == "subscribed"
    refused = await subscribe(fleet.vehicles[3])
    assert (refused["type"], refused["code"]) == ("error", "too_many_subscriptions")
    assert (await subscribe(fleet.vehicles[0], "unsubscribe"))["type"] == "unsubscribed"
    assert (await subscribe(fleet.vehicles[3]))["type"] == "subscribed"  # the connection stays usable
    await ws.close()
    await bystander.check(t0)
