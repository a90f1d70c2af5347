"""The socket server's handshake over a real loopback connection."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api.security.tokens import TokenType
from api.sockets.frames import (
    CLOSE_AUTH_TIMEOUT,
    CLOSE_FORBIDDEN,
    CLOSE_NO_VEHICLE,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_UNAUTHENTICATED,
)
from domain.roles import Role
from tests.support import free_port, test_settings
from waybill.resources import Resources
from waybill.services import SocketService


@pytest.fixture(scope="module")
async def sockets(sqlite_url: str) -> AsyncIterator[tuple[str, Resources]]:
    settings = test_settings(database_url=sqlite_url, ws_auth_timeout_seconds=0.5)
    resources = await Resources.open(settings)
    port = free_port()
    service = SocketService(resources, "127.0.0.1", port)
    await service.start()
    yield f"127.0.0.1:{port}", resources
    await service.stop()
    await resources.close()


def token(resources: Resources, role: Role, *, now: datetime | None = None) -> str:
    return resources.tokens.issue(
        user_id=uuid.uuid4(), organization_id=uuid.uuid4(), role=role, token_type=TokenType.ACCESS, now=now
    ).token


async def handshake(url: str, first: str) -> tuple[list[dict[str, object]], int | None]:
    frames: list[dict[str, object]] = []
    async with connect(url) as ws:
        await ws.send(first)
        try:
            frames.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "ping", "id": 7}))
            frames.append(json.loads(await ws.recv()))
        except ConnectionClosed:
            pass
        await ws.wait_closed()
        return frames, ws.close_code
    raise AssertionError("unreachable")


async def test_driver_without_vehicle_is_closed(sockets: tuple[str, Resources]) -> None:
    host, res = sockets
    frames, code = await handshake(
        f"ws://{host}/ws/driver", json.dumps({"type": "auth", "token": token(res, Role.DRIVER)})
    )
    assert (code, frames[0]["code"]) == (CLOSE_NO_VEHICLE, "no_vehicle")


async def test_dispatcher_authenticates_and_pings(sockets: tuple[str, Resources]) -> None:
    host, res = sockets
    async with connect(f"ws://{host}/ws/dispatch") as ws:
        await ws.send(json.dumps({"type": "auth", "token": token(res, Role.DISPATCHER)}))
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps({"type": "ping", "id": 7}))
        assert json.loads(await ws.recv()) == {"type": "pong", "id": 7}
        await ws.send("not json")
        assert json.loads(await ws.recv())["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("path", "role", "close_code", "error_code"),
    [
        ("/ws/driver", Role.DISPATCHER, CLOSE_FORBIDDEN, "forbidden"),
        ("/ws/dispatch", Role.DRIVER, CLOSE_FORBIDDEN, "forbidden"),
    ],
)
async def test_role_bound_to_path(
    sockets: tuple[str, Resources], path: str, role: Role, close_code: int, error_code: str
) -> None:
    host, res = sockets
    frames, code = await handshake(
        f"ws://{host}{path}", json.dumps({"type": "auth", "token": token(res, role)})
    )
    assert code == close_code
    assert frames[0]["code"] == error_code


async def test_bad_first_frames(sockets: tuple[str, Resources]) -> None:
    host, res = sockets
    url = f"ws://{host}/ws/dispatch"
    frames, code = await handshake(url, json.dumps({"type": "ping"}))
    assert (code, frames[0]["code"]) == (CLOSE_UNAUTHENTICATED, "auth_required")
    frames, code = await handshake(url, json.dumps({"type": "auth", "token": "garbage"}))
    assert (code, frames[0]["code"]) == (CLOSE_UNAUTHENTICATED, "invalid_token")
    expired = token(res, Role.DISPATCHER, now=datetime.now(UTC) - timedelta(hours=2))
    frames, code = await handshake(url, json.dumps({"type": "auth", "token": expired}))
    assert (code, frames[0]["code"]) == (CLOSE_TOKEN_EXPIRED, "token_expired")


async def test_silent_client_is_closed(sockets: tuple[str, Resources]) -> None:
    host, _ = sockets
    async with connect(f"ws://{host}/ws/driver") as ws:
        assert json.loads(await ws.recv())["code"] == "auth_timeout"
        await ws.wait_closed()
        assert ws.close_code == CLOSE_AUTH_TIMEOUT


async def test_health_and_unknown_path(sockets: tuple[str, Resources]) -> None:
    host, _ = sockets
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://{host}/health")).text == "ok\n"
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"ws://{host}/ws/elsewhere"):
            pass
    assert info.value.response.status_code == 404
