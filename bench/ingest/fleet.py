"""The benchmark's fixtures: a migrated PostgreSQL database with a fleet of drivers, and Redis keys of
its own prefix; the run's positions and keys are removed afterwards."""

from __future__ import annotations

import uuid

from bench.common.output import say
from bench.ingest.config import REDIS_PREFIX
from db.repositories.bench_fixtures import DriverFleet, delete_positions, ensure_database, insert_driver_fleet
from db.session import create_engine, create_sessionmaker
from plumbing.settings import to_async_url


def make_database(url: str) -> None:
    """Create the PostgreSQL database named in `url` if it does not exist."""
    if (created := ensure_database(url)) is not None:
        say(f"created database {created}")


async def make_fleet(database_url: str, k: int) -> DriverFleet:
    """One organization, K vehicles each with a driver (a user with role `driver`), one dispatcher."""
    engine = create_engine(to_async_url(database_url))
    try:
        async with create_sessionmaker(engine)() as session:
            return await insert_driver_fleet(session, k, uuid.uuid4().hex[:10])
    finally:
        await engine.dispose()


async def forget_positions(database_url: str, org: uuid.UUID) -> int:
    """Delete the run's position history so that the bench database does not grow run after run."""
    engine = create_engine(to_async_url(database_url))
    try:
        return await delete_positions(engine, org)
    finally:
        await engine.dispose()


async def clear_redis(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=REDIS_PREFIX + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
