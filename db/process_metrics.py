"""What every Waybill process exports besides its own series: CPU, memory and file descriptors
(prometheus-client's process collector), the Python runtime, and its database pool."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from sqlalchemy.ext.asyncio import AsyncEngine

from db.pool_metrics import PoolCollector


def add_process_collectors(registry: CollectorRegistry, engine: Callable[[], AsyncEngine | None]) -> None:
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(PoolCollector(engine))
