"""A socket server on a loopback port over SQLite, with the in-process bus and (when REDIS_URL is set)
Redis, started once per module and backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from api.resources import Resources
from tests.conftest import REDIS_URL
from tests.support import free_port, test_settings
from waybill.services import SocketService

BUSES = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL not set")),
]


@dataclass
class Server:
    url: str
    resources: Resources
    service: SocketService


@pytest.fixture(scope="module", params=BUSES)
async def server(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[Server]:
    settings = test_settings(
        database_url=sqlite_url,
        redis_url=REDIS_URL if request.param == "redis" else None,
        redis_prefix="waybill-test-sockets:",
        tracking_history_flush_ms=30,
        tracking_publish_ms=10,
        ws_dispatch_max_lag_seconds=2.0,
        ws_dispatch_max_pending=200,
    )
    resources = await Resources.open(settings)
    port = free_port()
    service = SocketService(resources, "127.0.0.1", port)
    await service.start()
    yield Server(f"ws://127.0.0.1:{port}", resources, service)
    await service.stop()
    await resources.close()
