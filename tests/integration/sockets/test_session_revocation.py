"""Signing out (or refresh-token reuse) ends the session's access tokens on open sockets too (issue 17,
defect 7): real API servers and a real socket server on loopback. In-process bus: one process serves
both, as `waybill dev` does. Redis: two API replicas and a socket server with their own resources,
as separate processes would have, meeting on one Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from api.resources import Resources
from api.security.denylist import RECHECK_S
from api.sockets.frames import CLOSE_UNAUTHENTICATED
from domain.roles import Role
from tests.conftest import REDIS_URL
from tests.integration.sockets.conftest import BUSES
from tests.integration.sockets.support import Fleet, make_fleet, open_socket, recv_until
from tests.integration.sockets.test_socket_security import closed, errors
from tests.support import PASSWORD, free_port, test_settings
from waybill.services import ApiService, SocketService

CLOSED_WITHIN_S = 1.0  # a revoked session's sockets are closed this soon after the logout answers


@dataclass
class Stack:
    apis: list[str]  # API base URLs: one in process, two replicas on Redis
    sockets: str
    resources: Resources  # the socket server's
    service: SocketService
    bus: str


@pytest.fixture(scope="module", params=BUSES)
async def stack(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[Stack]:
    bus = request.param
    settings = test_settings(
        database_url=sqlite_url,
        redis_url=REDIS_URL if bus == "redis" else None,
        redis_prefix=f"waybill-test-revoke-{uuid.uuid4().hex[:8]}:",
    )
    async with contextlib.AsyncExitStack() as stack:

        async def resources() -> Resources:
            res = await Resources.open(settings)
            stack.push_async_callback(res.close)
            return res

        sockets_res = await resources()
        api_res = [sockets_res] if bus == "memory" else [await resources(), await resources()]
        apis = []
        for res in api_res:
            port = free_port()
            api = ApiService(res, "127.0.0.1", port)
            await api.start()
            stack.push_async_callback(api.stop)
            apis.append(f"http://127.0.0.1:{port}")
        service = SocketService(sockets_res, "127.0.0.1", free_port())
        await service.start()
        stack.push_async_callback(service.stop)
        yield Stack(apis, f"ws://127.0.0.1:{service.port}", sockets_res, service, bus)


async def login(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    r = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    pair: dict[str, str] = r.json()
    return pair


async def assert_pong(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "ping", "id": 7}))
    assert (await recv_until(ws, "pong"))["id"] == 7


async def assert_closed_as_revoked(ws: ClientConnection, since: float) -> None:
    frames, code = await closed(ws, timeout=CLOSED_WITHIN_S + 1)
    assert (errors(frames), code) == (["token_revoked"], CLOSE_UNAUTHENTICATED)
    assert time.monotonic() - since <= CLOSED_WITHIN_S


async def assert_refused_everywhere(stack: Stack, token: str) -> None:
    """Every API replica answers 401 token_revoked (a replica that said yes just before may take up
    to the denylist's recheck interval), and the socket server refuses it at the handshake."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10) as http:
        for api in stack.apis:
            deadline = time.monotonic() + RECHECK_S + 0.5
            while (r := await http.get(f"{api}/api/v1/auth/me", headers=headers)).status_code == 200:
                assert time.monotonic() < deadline, f"{api} still accepts the signed-out token"
                await asyncio.sleep(0.05)
            assert (r.status_code, r.json()["code"]) == (401, "token_revoked")
    ws, first = await open_socket(f"{stack.sockets}/ws/driver", token)
    frames, code = await closed(ws)
    assert (first["code"], code) == ("token_revoked", CLOSE_UNAUTHENTICATED)


async def test_logout_closes_the_sessions_open_sockets(stack: Stack) -> None:
    fleet: Fleet = await make_fleet(stack.resources.sessionmaker, 1)
    dispatcher_email = fleet.tenant.emails[Role.DISPATCHER]
    async with httpx.AsyncClient(base_url=stack.apis[0], timeout=10) as http:
        driver = await login(http, fleet.driver_emails[0])
        dispatcher, other_tab = await login(http, dispatcher_email), await login(http, dispatcher_email)
        driver_ws, ready = await open_socket(f"{stack.sockets}/ws/driver", driver["access_token"])
        assert ready["type"] == "ready"
        dispatch_ws, ready = await open_socket(f"{stack.sockets}/ws/dispatch", dispatcher["access_token"])
        assert ready["type"] == "ready"
        other_ws, ready = await open_socket(f"{stack.sockets}/ws/dispatch", other_tab["access_token"])
        assert ready["type"] == "ready"
        for pair in (driver, dispatcher):
            r = await http.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
            assert r.status_code == 204
        since = time.monotonic()
    await assert_closed_as_revoked(driver_ws, since)
    await assert_closed_as_revoked(dispatch_ws, since)
    await assert_pong(other_ws)  # another session of the same user stays open
    await assert_refused_everywhere(stack, driver["access_token"])
    await assert_pong(other_ws)
    await other_ws.close()


async def test_reuse_detection_closes_every_socket_of_the_family(stack: Stack) -> None:
    fleet = await make_fleet(stack.resources.sessionmaker, 2)
    async with httpx.AsyncClient(base_url=stack.apis[-1], timeout=10) as http:
        first = await login(http, fleet.driver_emails[0])
        r = await http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert r.status_code == 200
        second = r.json()
        bystander = await login(http, fleet.driver_emails[1])
        sockets = [
            (await open_socket(f"{stack.sockets}/ws/driver", pair["access_token"]))[0]
            for pair in (first, second, bystander)
        ]
        # The rotated refresh token comes back: the whole family is revoked, both access tokens with it.
        r = await http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert (r.status_code, r.json()["code"]) == (401, "refresh_token_reused")
        since = time.monotonic()
    for ws in sockets[:2]:
        await assert_closed_as_revoked(ws, since)
    await assert_pong(sockets[2])
    for pair in (first, second):
        await assert_refused_everywhere(stack, pair["access_token"])
    await sockets[2].close()


async def test_a_revocation_missed_while_unsubscribed_closes_on_resubscription(stack: Stack) -> None:
    fleet = await make_fleet(stack.resources.sessionmaker, 1)
    revocations = stack.service.sockets.revocations
    async with httpx.AsyncClient(base_url=stack.apis[0], timeout=10) as http:
        pair = await login(http, fleet.driver_emails[0])
        ws, ready = await open_socket(f"{stack.sockets}/ws/driver", pair["access_token"])
        assert ready["type"] == "ready"
        await revocations.stop()  # as if the bus connection had dropped: the message goes nowhere
        try:
            r = await http.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
            assert r.status_code == 204
            await assert_pong(ws)  # nothing told this server yet
        finally:
            revocations.start()
        since = time.monotonic()
    await assert_closed_as_revoked(ws, since)


async def test_logout_without_a_reachable_denylist_says_it_is_incomplete(sqlite_url: str) -> None:
    """Redis down (a closed loopback port): logout revokes the refresh tokens but cannot deny the
    access tokens, and says so with a retryable 503 instead of a 204 that would be untrue."""
    settings = test_settings(database_url=sqlite_url, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    res = await Resources.open(settings)
    port = free_port()
    api = ApiService(res, "127.0.0.1", port)
    await api.start()
    try:
        fleet = await make_fleet(res.sessionmaker, 1)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            pair = await login(http, fleet.driver_emails[0])
            r = await http.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
            assert (r.status_code, r.json()["code"], r.headers["retry-after"]) == (
                503,
                "logout_incomplete",
                "1",
            )
            r = await http.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
            assert (r.status_code, r.json()["code"]) == (401, "token_revoked")
    finally:
        await api.stop()
        await res.close()
