"""Issue 17, defects 5 and 6 on the socket server, over real loopback connections on each SQL backend:
an integer literal over Python's 4,300-digit limit is an `invalid_json` error frame like any other bad
frame (before authentication too, where a bad first frame closes 4401), not a 1011 close with a
traceback; a `seq` the history cannot store (over 2^63-1) is refused instead of blocking the history
writes; a NUL or lone surrogate in a dispatcher's subscription id is refused before it reaches a
statement (PostgreSQL refused NUL, both drivers the surrogate: close 1011)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.resources import Resources
from api.sockets.frames import CLOSE_UNAUTHENTICATED
from domain.roles import Role
from tests.integration.sockets.support import Fleet, driver_token, fix, make_fleet, open_socket, staff_token
from tests.support import free_port, test_settings
from waybill.services import SocketService

HUGE = "9" * 5000  # over sys.get_int_max_str_digits() (4,300)


def with_huge(frame: dict[str, Any]) -> str:
    """The frame as JSON, with the integer literal HUGE wherever a value is the string "HUGE"."""
    return json.dumps(frame).replace('"HUGE"', HUGE)


@pytest.fixture(scope="module")
async def hostile_server(database_url: str) -> AsyncIterator[tuple[str, Resources]]:
    settings = test_settings(database_url=database_url, tracking_history_flush_ms=30, tracking_publish_ms=10)
    resources = await Resources.open(settings)
    port = free_port()
    service = SocketService(resources, "127.0.0.1", port)
    await service.start()
    yield f"ws://127.0.0.1:{port}", resources
    # Bounded: a position the history cannot store kept its write retrying, and stop() waiting, forever.
    await asyncio.wait_for(service.stop(), 30)
    await resources.close()


@pytest.fixture
async def hostile_fleet(sessionmaker: async_sessionmaker[AsyncSession]) -> Fleet:
    return await make_fleet(sessionmaker, 1)


async def _next(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        msg: dict[str, Any] = json.loads(await ws.recv())
    return msg


def _no_error_records(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def test_a_huge_integer_before_authentication_is_a_bad_first_frame(
    hostile_server: tuple[str, Resources], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = hostile_server
    for path in ("/ws/driver", "/ws/dispatch"):
        ws = await connect(url + path)
        await ws.send(with_huge({"type": "auth", "token": "HUGE"}))
        assert (await _next(ws))["code"] == "invalid_json"
        with pytest.raises(ConnectionClosed):
            await _next(ws)
        assert ws.close_code == CLOSE_UNAUTHENTICATED
    _no_error_records(caplog)


async def test_a_huge_integer_after_authentication_is_an_error_frame_and_the_driver_goes_on(
    hostile_server: tuple[str, Resources], hostile_fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    url, resources = hostile_server
    ws, ready = await open_socket(f"{url}/ws/driver", driver_token(resources.tokens, hostile_fleet, 0))
    assert ready["type"] == "ready", ready
    await ws.send(with_huge({"type": "position", **fix(1, 52.52, 13.405), "seq": "HUGE"}))
    assert (await _next(ws))["code"] == "invalid_json"
    # A seq the history's BIGINT cannot hold: refused, so it cannot stall the writes of others.
    await ws.send(json.dumps({"type": "position", **fix(2**63, 52.52, 13.405)}))
    assert (await _next(ws))["code"] == "invalid_position"
    await ws.send(
        json.dumps({"type": "positions", "positions": [fix(1, 52.52, 13.405), fix(2**64, 52.52, 13.4)]})
    )
    assert (await _next(ws))["code"] == "invalid_position"
    await ws.send(json.dumps({"type": "position", **fix(2**63 - 1, 52.52, 13.405)}))
    assert await _next(ws) == {"type": "ack", "seqs": [2**63 - 1]}
    await ws.send(json.dumps({"type": "ping", "id": 1}))
    assert await _next(ws) == {"type": "pong", "id": 1}
    await ws.close()
    _no_error_records(caplog)


async def test_dispatch_frames_with_huge_integers_or_nul_ids_get_error_frames(
    hostile_server: tuple[str, Resources], hostile_fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    url, resources = hostile_server
    ws, ready = await open_socket(
        f"{url}/ws/dispatch", staff_token(resources.tokens, hostile_fleet, Role.DISPATCHER)
    )
    assert ready["type"] == "ready", ready
    await ws.send(with_huge({"type": "subscribe", "topic": "vehicle", "id": "HUGE"}))
    assert (await _next(ws))["code"] == "invalid_json"
    # json.loads lets a lone surrogate ("\\ud800") through; no driver can encode it.
    for topic, ident in [("route", f"route-\x00{uuid.uuid4()}"), ("vehicle", "\x00"), ("route", "r-\ud800")]:
        await ws.send(json.dumps({"type": "subscribe", "topic": topic, "id": ident}))
        error = await _next(ws)
        assert error["code"] == "invalid_topic", error
        assert "NUL" in error["detail"]
    await ws.send(json.dumps({"type": "subscribe", "topic": "vehicle", "id": str(hostile_fleet.vehicles[0])}))
    assert (await _next(ws))["type"] == "subscribed"
    await ws.close()
    _no_error_records(caplog)
