"""Rate limits as a client meets them: exact counts per window, per user and per address, on login,
and shared by two API servers through one Redis (as two replicas would)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.resources import Resources
from domain.roles import Role
from plumbing.temporal import TemporalConnector
from tests.conftest import REDIS_URL
from tests.support import PASSWORD, Tenant, free_port, make_tenant, test_settings
from waybill.services import ApiService


@contextlib.asynccontextmanager
async def api_servers(
    count: int, sqlite_url: str, env: WorkflowEnvironment, tmp_path: Path, **limits: Any
) -> AsyncIterator[tuple[list[str], Tenant]]:
    """`count` API servers with their own resources (as separate processes have) and these limits."""
    settings = test_settings(
        database_url=sqlite_url,
        data_dir=tmp_path,
        redis_url=REDIS_URL if count > 1 else None,
        redis_prefix=f"rl-{uuid.uuid4().hex[:8]}",
        **limits,
    )
    async with contextlib.AsyncExitStack() as stack:
        urls = []
        for _ in range(count):
            res = await Resources.open(settings, TemporalConnector(settings, env.client))
            stack.push_async_callback(res.close)
            port = free_port()
            api = ApiService(res, "127.0.0.1", port)
            await api.start()
            stack.push_async_callback(api.stop)
            urls.append(f"http://127.0.0.1:{port}")
        yield urls, await make_tenant(res.sessionmaker)


async def login(http: httpx.AsyncClient, tenant: Tenant) -> dict[str, str]:
    r = await http.post(
        "/api/v1/auth/login", json={"email": tenant.emails[Role.VIEWER], "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_per_user_limit_counts_exactly_and_says_when_to_retry(
    sqlite_url: str, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with api_servers(
        1, sqlite_url, dev_env, tmp_path, rate_limit_user=5, rate_limit_window_seconds=2
    ) as (
        [url],
        tenant,
    ):
        async with httpx.AsyncClient(base_url=url) as http:
            headers = await login(http, tenant)
            started = time.monotonic()
            codes = [(await http.get("/api/v1/depots", headers=headers)).status_code for _ in range(7)]
            assert codes == [200] * 5 + [429] * 2
            limited = await http.get("/api/v1/depots", headers=headers)
            elapsed = time.monotonic() - started
            assert limited.json()["code"] == "rate_limited"
            # The first request leaves the 2 s window `2 - its age` seconds from now, and its age is at
            # most `elapsed`: Retry-After is that, rounded up, and never more than the window (so 2
            # whenever the eight requests took under a second).
            retry_after = int(limited.headers["retry-after"])
            assert max(1, math.ceil(2 - elapsed)) <= retry_after <= 2, (retry_after, elapsed)
            assert (await http.get("/health")).status_code == 200  # probes are never limited
            await asyncio.sleep(2.1)
            assert (await http.get("/api/v1/depots", headers=headers)).status_code == 200


async def test_login_is_limited_per_address_and_account_even_with_the_right_password(
    sqlite_url: str, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with api_servers(1, sqlite_url, dev_env, tmp_path, rate_limit_login=3) as ([url], tenant):
        async with httpx.AsyncClient(base_url=url) as http:
            email = tenant.emails[Role.VIEWER]
            wrong = [
                (
                    await http.post("/api/v1/auth/login", json={"email": email, "password": "wrong-password"})
                ).status_code
                for _ in range(3)
            ]
            assert wrong == [401, 401, 401]
            right = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert right.status_code == 429
            other = tenant.emails[Role.DRIVER]  # another account from the same address is not locked out
            assert (
                await http.post("/api/v1/auth/login", json={"email": other, "password": PASSWORD})
            ).status_code == 200


@pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL: replicas share limits through Redis")
async def test_two_api_servers_share_one_limit_across_a_window_boundary(
    sqlite_url: str, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    n = 6
    async with api_servers(
        2, sqlite_url, dev_env, tmp_path, rate_limit_ip=n, rate_limit_window_seconds=2
    ) as (urls, _):
        async with httpx.AsyncClient() as http:

            async def burst() -> list[int]:
                calls = [http.get(f"{urls[i % 2]}/api/v1/depots") for i in range(2 * n)]
                return [r.status_code for r in await asyncio.gather(*calls)]

            first = await burst()
            assert sum(c != 429 for c in first) == n  # 401s: allowed through to authentication
            await asyncio.sleep(2.1)  # the window has slid past the first burst
            second = await burst()
            assert sum(c != 429 for c in second) == n


async def _logins(http: httpx.AsyncClient, email: str, forwarded_for: list[str]) -> list[int]:
    """Status of a wrong-password login per X-Forwarded-For value, in order."""
    codes = []
    for address in forwarded_for:
        r = await http.post(
            "/api/v1/auth/login",
            json={"email": email, "password": "wrong-password"},
            headers={"X-Forwarded-For": address},
        )
        codes.append(r.status_code)
    return codes


async def test_forwarded_for_counts_only_from_a_trusted_proxy(
    sqlite_url: str, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A real uvicorn server on loopback: its proxy-headers middleware decides the client address."""
    forged = [f"203.0.113.{i}" for i in range(1, 6)]
    # By default no proxy is trusted, loopback included: the peer's own address is the bucket.
    async with api_servers(1, sqlite_url, dev_env, tmp_path, rate_limit_login=3) as ([url], tenant):
        async with httpx.AsyncClient(base_url=url) as http:
            codes = await _logins(http, tenant.emails[Role.VIEWER], forged)
            assert codes == [401, 401, 401, 429, 429]
    # Named as a proxy, 127.0.0.1 is believed: each forwarded address is a client of its own ...
    async with api_servers(
        1, sqlite_url, dev_env, tmp_path, rate_limit_login=3, trusted_proxies=["127.0.0.1"]
    ) as ([url], tenant):
        async with httpx.AsyncClient(base_url=url) as http:
            email = tenant.emails[Role.VIEWER]
            assert await _logins(http, email, forged) == [401] * 5
            # ... and one forwarded address repeated is limited like one client.
            assert await _logins(http, email, ["198.51.100.7"] * 4) == [401, 401, 401, 429]
