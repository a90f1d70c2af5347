"""The socket server's handshake over a real loopback connection."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api.resources import Resources
from api.security.tokens import TokenType
from api.sockets.frames import (
    CLOSE_AUTH_TIMEOUT,
    CLOSE_FORBIDDEN,
    CLOSE_NO_VEHICLE,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_UNAUTHENTICATED,
)
from db.models import User
from domain.roles import Role
from tests.support import Tenant, free_port, make_tenant, test_settings
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


@pytest.fixture(scope="module")
async def tenant(sockets: tuple[str, Resources]) -> Tenant:
    """One user per role; the driver has no Driver row, so no vehicle."""
    return await make_tenant(sockets[1].sessionmaker)


def token(
    resources: Resources,
    tenant: Tenant,
    role: Role,
    *,
    now: datetime | None = None,
    user_id: uuid.UUID | None = None,
) -> str:
    return resources.tokens.issue(
        user_id=user_id or tenant.user_ids[role],
        organization_id=tenant.organization_id,
        role=role,
        token_type=TokenType.ACCESS,
        now=now,
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


async def test_driver_without_vehicle_is_closed(sockets: tuple[str, Resources], tenant: Tenant) -> None:
    host, res = sockets
    frames, code = await handshake(
        f"ws://{host}/ws/driver", json.dumps({"type": "auth", "token": token(res, tenant, Role.DRIVER)})
    )
    assert (code, frames[0]["code"]) == (CLOSE_NO_VEHICLE, "no_vehicle")


async def test_dispatcher_authenticates_and_pings(sockets: tuple[str, Resources], tenant: Tenant) -> None:
    host, res = sockets
    async with connect(f"ws://{host}/ws/dispatch") as ws:
        await ws.send(json.dumps({"type": "auth", "token": token(res, tenant, Role.DISPATCHER)}))
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
    sockets: tuple[str, Resources], tenant: Tenant, path: str, role: Role, close_code: int, error_code: str
) -> None:
    host, res = sockets
    frames, code = await handshake(
        f"ws://{host}{path}", json.dumps({"type": "auth", "token": token(res, tenant, role)})
    )
    assert code == close_code
    assert frames[0]["code"] == error_code


async def test_bad_first_frames(sockets: tuple[str, Resources], tenant: Tenant) -> None:
    host, res = sockets
    url = f"ws://{host}/ws/dispatch"
    frames, code = await handshake(url, json.dumps({"type": "ping"}))
    assert (code, frames[0]["code"]) == (CLOSE_UNAUTHENTICATED, "auth_required")
    frames, code = await handshake(url, json.dumps({"type": "auth", "token": "garbage"}))
    assert (code, frames[0]["code"]) == (CLOSE_UNAUTHENTICATED, "invalid_token")
    expired = token(res, tenant, Role.DISPATCHER, now=datetime.now(UTC) - timedelta(hours=2))
    frames, code = await handshake(url, json.dumps({"type": "auth", "token": expired}))
    assert (code, frames[0]["code"]) == (CLOSE_TOKEN_EXPIRED, "token_expired")
    # A well-signed token of a user that does not exist (or no longer): refused like a revoked one.
    stranger = token(res, tenant, Role.DISPATCHER, user_id=uuid.uuid4())
    frames, code = await handshake(url, json.dumps({"type": "auth", "token": stranger}))
    assert (code, frames[0]["code"]) == (CLOSE_UNAUTHENTICATED, "invalid_token")


async def test_revoked_users_are_refused_at_the_handshake(
    sockets: tuple[str, Resources], tenant: Tenant
) -> None:
    """As on the REST API: a password change voids earlier tokens, a deactivated user or one whose role
    changed loses access (the socket server's user cache lives at most a few seconds; dropped here)."""
    host, res = sockets
    url = f"ws://{host}/ws/dispatch"
    mine = await make_tenant(res.sessionmaker)
    user = mine.user_ids[Role.VIEWER]
    before = token(res, mine, Role.VIEWER)
    async with res.sessionmaker() as session:
        await session.execute(
            update(User).where(User.id == user).values(password_changed_at=datetime.now(UTC))
        )
        await session.commit()
    res.users.drop(user)
    frames, code = await handshake(url, json.dumps({"type": "auth", "token": before}))
    assert (code, frames[0]["code"]) == (CLOSE_UNAUTHENTICATED, "token_revoked")
    await asyncio.sleep(0.01)  # iat is kept to the millisecond
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token(res, mine, Role.VIEWER)}))
        assert json.loads(await ws.recv())["type"] == "ready"
    async with res.sessionmaker() as session:
        await session.execute(update(User).where(User.id == user).values(active=False))
        await session.commit()
    res.users.drop(user)
    frames, code = await handshake(url, json.dumps({"type": "auth", "token": token(res, mine, Role.VIEWER)}))
    assert (code, frames[0]["code"]) == (CLOSE_UNAUTHENTICATED, "invalid_token")
    # A token claiming a role the user does not have.
    admin = token(res, mine, Role.ADMIN, user_id=mine.user_ids[Role.DISPATCHER])
    frames, code = await handshake(url, json.dumps({"type": "auth", "token": admin}))
    assert (code, frames[0]["code"]) == (CLOSE_UNAUTHENTICATED, "invalid_token")


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


async def test_a_star_origin_list_accepts_any_origin(sqlite_url: str) -> None:
    """`*` (what production needs to accept every origin on purpose) lets a browser handshake from
    any origin through to authentication, where a concrete list refuses it."""
    for allowed, status in ((["*"], None), (["https://console.example.com"], 403)):
        resources = await Resources.open(
            test_settings(database_url=sqlite_url, ws_auth_timeout_seconds=0.3, ws_allowed_origins=allowed)
        )
        port = free_port()
        service = SocketService(resources, "127.0.0.1", port)
        await service.start()
        try:
            url = f"ws://127.0.0.1:{port}/ws/dispatch"
            if status is None:
                async with connect(url, origin="https://anywhere.example") as ws:  # type: ignore[arg-type]
                    frame = json.loads(await ws.recv())
                    await ws.wait_closed()
                assert (frame["code"], ws.close_code) == ("auth_timeout", CLOSE_AUTH_TIMEOUT)
            else:
                with pytest.raises(InvalidStatus) as info:
                    await connect(url, origin="https://anywhere.example")  # type: ignore[arg-type]
                assert info.value.response.status_code == status
        finally:
            await service.stop()
            await resources.close()
