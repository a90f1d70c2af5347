"""Connection-pool use as Prometheus gauges, read from the engine at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine


class PoolCollector(Collector):
    """waybill_db_pool_connections{state="checked_out"|"idle"|"overflow"} and the configured size."""

    def __init__(self, engine: Callable[[], AsyncEngine | None]) -> None:
        self._engine = engine  # a getter: the engine may be made after the registry (app lifespan)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        engine = self._engine()
        pool = engine.pool if engine is not None else None
        connections = GaugeMetricFamily(
            "waybill_db_pool_connections", "Database connections of this process's pool", labels=["state"]
        )
        size = GaugeMetricFamily("waybill_db_pool_size", "Configured size of this process's pool")
        if pool is not None and hasattr(pool, "checkedout"):
            checked_out = pool.checkedout()
            connections.add_metric(["checked_out"], checked_out)
            connections.add_metric(["idle"], getattr(pool, "checkedin", lambda: 0)())
            connections.add_metric(["overflow"], max(0, getattr(pool, "overflow", lambda: 0)()))
            size.add_metric([], getattr(pool, "size", lambda: 0)())
        yield connections
        yield size
