"""The readiness checks /ready answers with and /metrics exports (waybill_dependency_up)."""

from __future__ import annotations

import asyncio

from api.resources import Resources


async def _cache_ok(resources: Resources) -> bool:
    try:
        await asyncio.wait_for(resources.cache_bus.ping(), 3)
        return True
    except Exception:
        return False


async def readiness(resources: Resources) -> dict[str, bool]:
    """database, cache and temporal: does each answer right now (checked concurrently)?"""
    db, cache, temporal = await asyncio.gather(
        resources.database_ok(), _cache_ok(resources), resources.temporal.healthy()
    )
    return {"database": db, "cache": cache, "temporal": temporal}
