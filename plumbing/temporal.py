"""Connecting to Temporal: once at start for workers, lazily (and again after a failure) for the API."""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client
from temporalio.runtime import Runtime

from plumbing import tracing
from plumbing.converter import DATA_CONVERTER
from plumbing.settings import Settings

log = logging.getLogger(__name__)


async def connect(
    settings: Settings, *, attempts: int = 1, delay: float = 1.0, runtime: Runtime | None = None
) -> Client:
    """Connect, retrying `attempts` times; the last failure propagates.

    `runtime` carries the SDK's telemetry (the worker's Prometheus endpoint); None is the default."""
    for attempt in range(1, attempts + 1):
        try:
            return await Client.connect(
                settings.temporal_target,
                namespace=settings.temporal_namespace,
                data_converter=DATA_CONVERTER,
                runtime=runtime,
                interceptors=tracing.client_interceptors(),
            )
        except Exception as exc:  # the SDK raises RuntimeError for connection failures
            if attempt == attempts:
                raise
            log.debug("temporal not reachable yet", extra={"attempt": attempt, "error": str(exc)})
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


class TemporalConnector:
    """Hands out one shared client; if Temporal was down at start the next call tries again."""

    def __init__(
        self, settings: Settings, client: Client | None = None, runtime: Runtime | None = None
    ) -> None:
        self._settings = settings
        self._client = client
        self._runtime = runtime
        self._lock = asyncio.Lock()

    async def get(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                self._client = await connect(self._settings, runtime=self._runtime)
            return self._client

    async def healthy(self, timeout: float = 3.0) -> bool:
        try:
            client = await asyncio.wait_for(self.get(), timeout)
            return bool(await asyncio.wait_for(client.service_client.check_health(), timeout))
        except Exception:
            return False
