"""Stopping `waybill sockets` cleanly (SIGTERM) under load loses no acknowledged position.

A real `waybill sockets` process (Redis as its bus, as a separate role needs; the session's SQLite
database as the system of record and history store) takes positions from DRIVERS drivers streaming
RATE positions/s each; SIGTERM arrives mid-stream and the drivers keep sending until the server
closes their sockets. Then:

- the process exits with code 0 within the grace period the deployment gives it;
- every position it acknowledged is in the history store (an ack is a promise that it is stored);
- every position sent well before the signal was acknowledged: the server reads, stores and
  acknowledges what it received before it closes the sockets.

The history flush interval is set far beyond the test's length and the batch size above what the
drivers send, so that everything received is written by the final flush in `stop()`: were that
flush skipped (or the acks sent before the write), the last two checks would fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.security.tokens import TokenService
from db.history.sql import SqlHistoryStore
from db.session import create_engine, create_sessionmaker
from domain.roles import Role
from plumbing.ports import free_port_range
from plumbing.settings import to_async_url
from tests.conftest import REDIS_URL
from tests.e2e.test_dev_command import STORE_VARS, WAYBILL
from tests.integration.sockets.support import Fleet, access, make_fleet
from tests.support import free_port, test_settings

pytestmark = pytest.mark.skipif(
    not REDIS_URL, reason="REDIS_URL not set (`waybill sockets` alone needs Redis)"
)

DRIVERS = 30
RATE = 20.0  # positions per second and driver
STREAM_S = 4.0  # before SIGTERM
GRACE_S = 30.0  # terminationGracePeriodSeconds of deploy/k8s/base/sockets.yaml
RECEIVED_MARGIN_S = 1.0  # positions sent this long before the signal have surely been read


@dataclass
class Stream:
    token: str
    vehicle_id: uuid.UUID
    sent: dict[int, float] = field(default_factory=dict)  # seq -> monotonic send time
    acked: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    close_code: int | None = None  # the server's, once it has closed the socket


async def wait_healthy(port: int, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"waybill sockets exited early:\n{proc.communicate()[0]}")
            try:
                if (await http.get(f"http://127.0.0.1:{port}/health", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"nothing answered /health on port {port}")


async def wait_replicas(metrics_base: int, processes: int, proc: subprocess.Popen[str]) -> None:
    """Every replica of `waybill sockets --processes N` up: each answers on its own metrics port, which
    it opens after the shared socket port (the shared port answers as soon as any one is up)."""
    for i in range(processes if processes > 1 else 0):
        await wait_healthy(metrics_base + i, proc)


async def drive(url: str, stream: Stream, index: int) -> None:
    """Authenticate, then send a position every 1/RATE s until the server closes the socket."""
    ws: ClientConnection = await connect(url + "/ws/driver")
    await ws.send(json.dumps({"type": "auth", "token": stream.token}))
    ready = json.loads(await ws.recv())
    assert ready["type"] == "ready", ready

    async def read() -> None:
        try:
            async for raw in ws:
                msg = json.loads(raw)
                if msg["type"] == "ack":
                    assert not msg.get("filtered"), msg
                    stream.acked.update(msg["seqs"])
                elif msg["type"] == "error":
                    stream.errors.append(f"{msg['code']}: {msg['detail']}")
        except ConnectionClosed:
            pass

    reader = asyncio.create_task(read())
    lat, lon = 52.40 + index * 0.001, 13.30
    seq = 0
    t0 = datetime.now(UTC) - timedelta(seconds=1)
    try:
        while True:
            seq += 1
            lat += 0.00001  # about 1.1 m north per fix
            at = t0 + timedelta(seconds=seq / RATE)
            frame = {"type": "position", "seq": seq, "recorded_at": at.isoformat(), "lat": lat, "lon": lon}
            frame["accuracy_m"] = 5.0
            await ws.send(json.dumps(frame))
            stream.sent[seq] = time.monotonic()
            await asyncio.sleep(1 / RATE)
    except ConnectionClosed:
        pass
    finally:
        await reader
        stream.close_code = ws.close_code


async def seeded_fleet(sqlite_url: str, drivers: int) -> tuple[Fleet, str, TokenService]:
    """A fleet in the database the socket processes use, the JWT key they are given and tokens
    signed with it."""
    engine = create_engine(to_async_url(sqlite_url))
    try:
        fleet = await make_fleet(create_sessionmaker(engine), drivers)
    finally:
        await engine.dispose()
    key = secrets.token_urlsafe(48)
    return fleet, key, TokenService(test_settings(jwt_keys={"e2e": key}))


def sockets_env(database_url: str, data_dir: Path, key: str, port: int, **extra: str) -> dict[str, str]:
    """The environment of a `waybill sockets` process under test: Redis as its bus, a fresh prefix."""
    env = {k: v for k, v in os.environ.items() if k not in STORE_VARS and not k.startswith("WAYBILL_")}
    env.update(
        {
            "REDIS_URL": str(REDIS_URL),
            "DATABASE_URL": database_url,
            "WAYBILL_ENV": "test",
            "WAYBILL_JWT_KEYS": json.dumps({"e2e": key}),
            "WAYBILL_SOCKETS_PORT": str(port),
            "WAYBILL_DATA_DIR": str(data_dir),
            "WAYBILL_REDIS_PREFIX": f"waybill-e2e-sockets-{uuid.uuid4().hex[:8]}:",
            "WAYBILL_LOG_FORMAT": "json",
            **extra,
        }
    )
    return env


@pytest.mark.parametrize("processes", [1, 2], ids=["one-process", "two-replicas"])
async def test_sigterm_under_load_loses_no_acknowledged_position(
    sqlite_url: str, tmp_path: Path, processes: int
) -> None:
    """With `--processes 2` the signal goes to the supervisor, which passes it on to both replicas."""
    fleet, key, tokens = await seeded_fleet(sqlite_url, DRIVERS)
    streams = [
        Stream(access(tokens, fleet.org, user, Role.DRIVER), vehicle)
        for user, vehicle in zip(fleet.driver_users, fleet.vehicles, strict=True)
    ]

    port = free_port()
    env = sockets_env(
        sqlite_url,
        tmp_path,
        key,
        port,
        # Nothing is written before the signal: all of it rests on the final flush.
        WAYBILL_TRACKING_HISTORY_FLUSH_MS="600000",
        WAYBILL_TRACKING_HISTORY_BATCH="100000",
        WAYBILL_SOCKETS_METRICS_PORT=str(metrics_base := free_port_range(processes)),
    )
    proc = subprocess.Popen(
        [WAYBILL, "sockets", "--processes", str(processes)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        await wait_healthy(port, proc)
        await wait_replicas(metrics_base, processes, proc)
        drivers = [asyncio.create_task(drive(f"ws://127.0.0.1:{port}", s, i)) for i, s in enumerate(streams)]
        await asyncio.sleep(STREAM_S)
        signal_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(GRACE_S + 10):
            await asyncio.gather(*drivers)
            while proc.poll() is None:
                await asyncio.sleep(0.05)
        exit_s = time.monotonic() - signal_at
        out = proc.communicate()[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 0, out
    assert exit_s < GRACE_S, f"stopped after {exit_s:.1f}s, beyond the {GRACE_S:.0f}s grace period"
    assert not [e for s in streams for e in s.errors], [e for s in streams for e in s.errors][:5]
    idle = [
        s.vehicle_id for s in streams if not any(signal_at - 0.5 < t < signal_at for t in s.sent.values())
    ]
    assert not idle, f"not streaming when the signal came: {idle}"

    history = SqlHistoryStore(create_sessionmaker(engine := create_engine(to_async_url(sqlite_url))))
    try:
        since = datetime.now(UTC) - timedelta(hours=1)
        until = datetime.now(UTC) + timedelta(hours=1)
        lost: dict[uuid.UUID, list[int]] = {}
        unacked: dict[uuid.UUID, list[int]] = {}
        for s in streams:
            stored = {p.seq for p in await history.positions(fleet.org, s.vehicle_id, since, until, 10_000)}
            if missing := sorted(s.acked - stored):
                lost[s.vehicle_id] = missing
            early = [seq for seq, t in s.sent.items() if t < signal_at - RECEIVED_MARGIN_S]
            if never := sorted(set(early) - s.acked):
                unacked[s.vehicle_id] = never
    finally:
        await engine.dispose()
    acked = sum(len(s.acked) for s in streams)
    assert acked > 0, "nothing was acknowledged"
    assert not lost, f"acknowledged but not stored: {lost}"
    assert not unacked, f"sent >{RECEIVED_MARGIN_S}s before SIGTERM but never acknowledged: {unacked}"
