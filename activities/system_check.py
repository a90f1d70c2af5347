"""The store check activity: pings each store from the worker's side."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from activities.interfaces import implements
from activities.interfaces.system_check import SystemCheckInterface
from domain.health import StoreCheck, SystemCheckInput, SystemCheckResult

if TYPE_CHECKING:
    from activities.resources import ActivityResources as Resources

# Same form as the SDK's default worker identity, so it can be matched in the Web UI.
WORKER_IDENTITY = f"{os.getpid()}@{socket.gethostname()}"


async def _probe(name: str, backend: str, check: Awaitable[object]) -> StoreCheck:
    try:
        result = await asyncio.wait_for(check, 5)
        ok = result is not False
        return StoreCheck(name=name, ok=ok, backend=backend, detail="" if ok else "check returned false")
    except Exception as exc:
        return StoreCheck(name=name, ok=False, backend=backend, detail=f"{type(exc).__name__}: {exc}")


class SystemCheckActivities(SystemCheckInterface):
    def __init__(self, resources: Resources) -> None:
        self._resources = resources

    @implements(SystemCheckInterface.check_stores)
    async def check_stores(self, params: SystemCheckInput) -> SystemCheckResult:  # noqa: ARG002
        r = self._resources
        s = r.settings
        checks = await asyncio.gather(
            _probe("database", s.database_label, r.database_ok()),
            _probe("cache_bus", "redis" if s.redis_url else "in-process", r.cache_bus.ping()),
            _probe("history", "mongodb" if s.mongodb_url else s.database_label, r.history.ping()),
        )
        return SystemCheckResult(
            checked_at=datetime.now(UTC), worker_identity=WORKER_IDENTITY, stores=list(checks)
        )
