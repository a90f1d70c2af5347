"""Backend fixtures for the store contract tests: every test runs once per reachable backend.

History: sqlite, postgresql (TEST_DATABASE_URL), mongodb (MONGODB_URL). Cache and bus: memory,
redis (REDIS_URL). Unreachable backends are skipped parameters that say why.

The SQL history backends reuse the session's migrated databases (`sqlite_url`, `postgres_url` from
tests/conftest.py). They are not reached through its parametrized `sessionmaker` fixture because a
third, non-SQL parameter cannot be merged into that parametrization without overriding
`database_url`, which would let pytest's session cache hand one backend's engine to another.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from sqlalchemy.ext.asyncio import AsyncEngine

from db.bus import CacheBus, MemoryCacheBus, RedisCacheBus
from db.history import HistoryStore, MongoHistoryStore, SqlHistoryStore
from db.session import create_engine, create_sessionmaker
from plumbing.settings import to_async_url

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
REDIS_URL = os.environ.get("REDIS_URL")
MONGODB_URL = os.environ.get("MONGODB_URL")
MONGO_PROBE_TIMEOUT_MS = 2000

HISTORY_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=pytest.mark.skipif(not TEST_DATABASE_URL, reason="TEST_DATABASE_URL not set"),
    ),
    pytest.param(
        "mongodb", id="mongodb", marks=pytest.mark.skipif(not MONGODB_URL, reason="MONGODB_URL not set")
    ),
]

CACHE_BUS_BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL not set")),
]


@pytest.fixture(scope="session")
async def sql_engines() -> AsyncIterator[dict[str, AsyncEngine]]:
    """One engine per SQL backend for the session, disposed at the end."""
    engines: dict[str, AsyncEngine] = {}
    yield engines
    for eng in engines.values():
        await eng.dispose()


@pytest.fixture(scope="session")
def mongo_database() -> Iterator[str]:
    """A throwaway database name on a MongoDB that answers; dropped after the session.

    Synchronous on purpose: `history` reaches it through getfixturevalue, which cannot set up an
    async fixture from inside a running event loop.
    """
    assert MONGODB_URL
    client: MongoClient[dict[str, object]] = MongoClient(
        MONGODB_URL, serverSelectionTimeoutMS=MONGO_PROBE_TIMEOUT_MS
    )
    try:
        try:
            client.admin.command("ping")
        except PyMongoError:
            pytest.skip("MongoDB at MONGODB_URL does not answer")
        name = f"waybill_test_{uuid.uuid4().hex[:10]}"
        yield name
        client.drop_database(name)
    finally:
        client.close()


@pytest.fixture(params=HISTORY_BACKENDS)
async def history(
    request: pytest.FixtureRequest, sql_engines: dict[str, AsyncEngine]
) -> AsyncIterator[HistoryStore]:
    backend: str = request.param
    store: HistoryStore
    if backend == "mongodb":
        assert MONGODB_URL
        database = request.getfixturevalue("mongo_database")
        store = MongoHistoryStore(MONGODB_URL, database)
    else:
        if backend not in sql_engines:
            url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
            sql_engines[backend] = create_engine(to_async_url(url))
        store = SqlHistoryStore(create_sessionmaker(sql_engines[backend]))
    yield store
    await store.close()


@pytest.fixture(params=CACHE_BUS_BACKENDS)
async def cache_bus(request: pytest.FixtureRequest) -> AsyncIterator[CacheBus]:
    """A fresh cache/bus per test; on Redis under a random key prefix, removed afterwards."""
    if request.param == "memory":
        bus = MemoryCacheBus(queue_size=64)
        yield bus
        await bus.close()
        return
    assert REDIS_URL
    prefix = f"waybill-test:{uuid.uuid4().hex[:12]}:"
    rbus = RedisCacheBus(REDIS_URL, prefix=prefix)
    yield rbus
    await rbus.close()
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
