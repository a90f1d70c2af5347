"""`waybill sockets --processes 2`: two replicas on one port, meeting on Redis.

A real supervisor and its two replica processes (Redis as the bus, the session's SQLite database):

- the kernel spreads the drivers' connections over both replicas (each replica's own metrics port
  counts its sockets), and one dispatcher, connected to either, receives every vehicle's positions;
- the shared port's /metrics refuses to answer for all of them and says where each replica's are;
- a replica that dies takes the set down: the supervisor stops the other one and exits with 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from domain.roles import Role
from plumbing.ports import free_port_range
from tests.conftest import REDIS_URL
from tests.e2e.test_dev_command import WAYBILL
from tests.e2e.test_sockets_sigterm import seeded_fleet, sockets_env, wait_healthy, wait_replicas
from tests.integration.sockets.support import (
    access,
    open_socket,
    recv_until,
    staff_token,
    track,
)
from tests.support import free_port

pytestmark = pytest.mark.skipif(
    not REDIS_URL, reason="REDIS_URL not set (`waybill sockets` alone needs Redis)"
)

DRIVERS = 24  # all on one replica by chance: 2 in 2**24


def start_two_replicas(
    database_url: str, tmp_path: Path, key: str, output: int = subprocess.PIPE
) -> tuple[subprocess.Popen[str], int, int]:
    """`waybill sockets --processes 2`: the supervisor, the shared port and the first metrics port."""
    port, metrics_base = free_port(), free_port_range(2)
    proc = subprocess.Popen(
        [WAYBILL, "sockets", "--processes", "2"],
        env=sockets_env(database_url, tmp_path, key, port, WAYBILL_SOCKETS_METRICS_PORT=str(metrics_base)),
        cwd=tmp_path,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, port, metrics_base


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def gone(pid: int) -> bool:
    """Exited (a zombie counts: it runs nothing and holds no port)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


async def driver_connections(http: httpx.AsyncClient, metrics_port: int) -> float:
    text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)).text
    for family in text_string_to_metric_families(text):
        if family.name == "waybill_socket_connections":
            return sum(s.value for s in family.samples if s.labels.get("endpoint") == "driver")
    raise AssertionError("no waybill_socket_connections in the replica's metrics")


async def test_two_replicas_share_the_port_and_every_position_reaches_the_dispatcher(
    sqlite_url: str, tmp_path: Path
) -> None:
    fleet, key, tokens = await seeded_fleet(sqlite_url, DRIVERS)
    proc, port, metrics_base = start_two_replicas(sqlite_url, tmp_path, key)
    url = f"ws://127.0.0.1:{port}"
    sockets = []
    try:
        await wait_healthy(port, proc)
        await wait_replicas(metrics_base, 2, proc)
        async with httpx.AsyncClient() as http:
            shared = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            assert shared.status_code == 404
            assert "WAYBILL_SOCKETS_METRICS_PORT" in shared.text

            dispatcher, ready = await open_socket(f"{url}/ws/dispatch", staff_token(tokens, fleet))
            sockets.append(dispatcher)
            assert ready["type"] == "ready"
            await dispatcher.send(json.dumps({"type": "subscribe", "topic": "fleet"}))
            assert (await recv_until(dispatcher, "subscribed"))["topic"] == "fleet"

            drivers = []
            for user in fleet.driver_users:
                ws, ready = await open_socket(
                    f"{url}/ws/driver", access(tokens, fleet.org, user, Role.DRIVER)
                )
                assert ready["type"] == "ready", ready
                sockets.append(ws)
                drivers.append(ws)
            counts = [await driver_connections(http, metrics_base + i) for i in range(2)]
            assert sum(counts) == DRIVERS, counts
            assert min(counts) > 0, f"the kernel put every driver on one replica: {counts}"

            for i, ws in enumerate(drivers):
                await ws.send(json.dumps({"type": "positions", "positions": track(3, lat=52.40 + i * 0.01)}))
            for ws in drivers:
                assert (await recv_until(ws, "ack", timeout=10))["seqs"] == [1, 2, 3]

        seen: dict[str, set[int]] = {}
        async with asyncio.timeout(15):
            while len(seen) < DRIVERS or any(len(s) < 3 for s in seen.values()):
                msg = json.loads(await dispatcher.recv())
                for p in msg.get("positions", []) if msg["type"] == "positions" else []:
                    seen.setdefault(p["vehicle_id"], set()).add(p["seq"])
        assert set(seen) == {str(v) for v in fleet.vehicles}

        replicas = children(proc.pid)
        assert len(replicas) == 2, replicas
        os.kill(max(replicas), signal.SIGKILL)  # the last one started: every replica is watched
        async with asyncio.timeout(40):
            while proc.poll() is None:
                await asyncio.sleep(0.1)
        out = proc.communicate()[0]
        assert proc.returncode == 1, out
        assert "stopping the others" in out
        assert gone(min(replicas)), "the other replica outlived the supervisor"
    finally:
        for ws in sockets:
            await ws.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_replicas_stop_when_the_supervisor_is_killed(sqlite_url: str, tmp_path: Path) -> None:
    """SIGKILL leaves the supervisor no chance to pass anything on: the kernel tells the replicas
    (PR_SET_PDEATHSIG), and they stop rather than keep the port."""
    key = secrets.token_urlsafe(48)
    proc, port, metrics_base = start_two_replicas(sqlite_url, tmp_path, key, output=subprocess.DEVNULL)
    replicas: list[int] = []
    try:
        await wait_healthy(port, proc)
        await wait_replicas(metrics_base, 2, proc)
        replicas = children(proc.pid)
        assert len(replicas) == 2, replicas
        proc.kill()
        proc.wait()
        async with asyncio.timeout(30):
            while not all(gone(pid) for pid in replicas):
                await asyncio.sleep(0.1)
    finally:
        for pid in replicas:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
