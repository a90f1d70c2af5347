"""Security headers on every response; oversized bodies refused with 413 before they are read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from domain.roles import Role
from tests.integration.api.conftest import LoginFn
from tests.support import Tenant


async def test_security_headers_everywhere(http: httpx.AsyncClient) -> None:
    for path, status in (("/health", 200), ("/api/v1/depots", 401), ("/nowhere", 404)):
        r = await http.get(path)
        assert r.status_code == status
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert (await http.get("/api/v1/depots")).headers["cache-control"] == "no-store"
    docs = await http.get("/api/docs")
    assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]


async def test_a_declared_length_over_the_limit_is_refused_unread(http: httpx.AsyncClient) -> None:
    url = httpx.URL(str(http.base_url))
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        b"POST /api/v1/depots HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\n\r\n"
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"application/problem+json" in head


async def test_a_streamed_body_over_the_limit_gets_413(
    http: httpx.AsyncClient, tenant: Tenant, login: LoginFn
) -> None:
    headers = {**await login(tenant, Role.DISPATCHER), "Content-Type": "application/json"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it is read
        yield b'{"name": "'
        for _ in range(5):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    r = await http.post("/api/v1/depots", headers=headers, content=chunks())
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    ok = await http.post(
        "/api/v1/depots", headers=headers, json={"name": "Small", "location": {"lat": 1, "lon": 2}}
    )
    assert ok.status_code == 201, ok.text
