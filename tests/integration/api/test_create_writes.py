"""Creates' claims and rows sent together on PostgreSQL (db/repositories/delivery_writes.py), against
the real database.

- Concurrent creates share round trips, and every one of them gets its own answer and its own row.
- Two creates with one Idempotency-Key in the same round trip: one claim, one row.
- A create the database refuses fails alone: the others sent with it are written.
- Connections are kept between writes, handed back when idle too long or on close, and a held
  connection the server closed costs no create.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.schemas.deliveries import DeliveryCreate, to_spec
from api.services.deliveries import _initial_state, _row_values
from db.models import DeliveryRow, IdempotencyKey
from db.repositories.delivery_creates import CLAIM_AND_ROW_PG as CLAIM
from db.repositories.delivery_creates import ROW_PG as ROW
from db.repositories.delivery_creates import claim_and_row_params
from db.repositories.delivery_writes import CreateWrites, Statement
from db.session import create_engine, create_sessionmaker
from domain.ids import uuid7
from plumbing.settings import to_async_url
from tests.support import make_tenant


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(to_async_url(postgres_url))
    yield engine
    await engine.dispose()


def row_params(org: uuid.UUID) -> dict[str, Any]:
    """The projection row of a new delivery (its `id` included), as the create without a key writes it."""
    now = datetime.now(UTC)
    return _row_values(_initial_state(uuid7(), org, spec(now), now), org, now, state_as_text=True)


def spec(now: datetime) -> Any:
    return to_spec(
        DeliveryCreate.model_validate(
            {
                "dropoff": {
                    "address": "Unter den Linden 1, Berlin",
                    "location": {"lat": 52.517, "lon": 13.389},
                    "windows": [{"start": now.isoformat(), "end": (now + timedelta(hours=4)).isoformat()}],
                },
            }
        )
    )


def params(org: uuid.UUID, key: str) -> dict[str, Any]:
    """The claim and row of a new delivery with an Idempotency-Key."""
    return claim_and_row_params(row_params(org), key, "digest")


async def rows_and_claims(engine: AsyncEngine, org: uuid.UUID) -> tuple[int, int]:
    async with create_sessionmaker(engine)() as session:
        rows = await session.scalar(select(func.count()).where(DeliveryRow.organization_id == org))
        claims = await session.scalar(select(func.count()).where(IdempotencyKey.organization_id == org))
    return int(rows or 0), int(claims or 0)


async def test_concurrent_creates_share_round_trips_and_each_gets_its_row(engine: AsyncEngine) -> None:
    org = (await make_tenant(create_sessionmaker(engine))).organization_id
    writes = CreateWrites(engine)
    results = await asyncio.gather(*(writes.write(CLAIM, params(org, f"k{i}")) for i in range(40)))
    assert results == [True] * 40
    assert writes.round_trips < 40 / 4, writes.round_trips
    assert await rows_and_claims(engine, org) == (40, 40)
    await writes.close()


async def test_both_statements_in_one_round_trip_each_get_their_answer(engine: AsyncEngine) -> None:
    org = (await make_tenant(create_sessionmaker(engine))).organization_id
    writes = CreateWrites(engine)
    results = await asyncio.gather(
        writes.write(CLAIM, params(org, "a")),
        writes.write(ROW, row_params(org)),
        writes.write(CLAIM, params(org, "a")),  # the key again: not claimed, nothing written
        writes.write(ROW, row_params(org)),
    )
    assert writes.round_trips == 1
    assert list(results) == [True, True, False, True]
    assert await rows_and_claims(engine, org) == (3, 1)
    await writes.close()


async def test_one_key_twice_in_one_round_trip_claims_once(engine: AsyncEngine) -> None:
    org = (await make_tenant(create_sessionmaker(engine))).organization_id
    writes = CreateWrites(engine)
    results = await asyncio.gather(
        writes.write(CLAIM, params(org, "same")), writes.write(CLAIM, params(org, "same"))
    )
    assert writes.round_trips == 1
    assert sorted(results) == [False, True]
    assert await rows_and_claims(engine, org) == (1, 1)
    await writes.close()


async def test_a_refused_create_fails_alone(engine: AsyncEngine) -> None:
    org = (await make_tenant(create_sessionmaker(engine))).organization_id
    writes = CreateWrites(engine)
    bad = params(uuid.uuid4(), "no-such-org")  # violates the organization foreign key
    first, refused, last = await asyncio.gather(
        writes.write(CLAIM, params(org, "a")),
        writes.write(CLAIM, bad),
        writes.write(CLAIM, params(org, "b")),
        return_exceptions=True,
    )
    # The refused statement rolled back the pipeline's others; written again alone, they are claimed.
    assert first is True
    assert last is True
    assert isinstance(refused, IntegrityError), refused  # SQLAlchemy's, as on the ORM path
    assert await rows_and_claims(engine, org) == (2, 2)
    await writes.close()


async def test_a_row_found_written_on_the_retry_counts_as_written(engine: AsyncEngine) -> None:
    """Rows without a key: after a failed pipeline, a row whose fresh id is taken was written by it."""
    org = (await make_tenant(create_sessionmaker(engine))).organization_id
    writes = CreateWrites(engine)
    row = row_params(org)
    assert await writes.write(ROW, row) is True
    bad = row_params(uuid.uuid4())  # violates the organization foreign key: the pipeline fails
    again, refused, new = await asyncio.gather(
        writes.write(ROW, row),
        writes.write(ROW, bad),
        writes.write(ROW, row_params(org)),
        return_exceptions=True,
    )
    assert again is True
    assert new is True
    assert isinstance(refused, IntegrityError), refused
    assert (await rows_and_claims(engine, org))[0] == 2
    plain = Statement(ROW.sql)  # without the flag a taken id is an error
    taken, _ = await asyncio.gather(
        writes.write(plain, row), writes.write(plain, bad), return_exceptions=True
    )
    assert isinstance(taken, IntegrityError), taken
    await writes.close()


async def test_a_naive_datetime_is_refused_before_anything_is_sent(engine: AsyncEngine) -> None:
    org = (await make_tenant(create_sessionmaker(engine))).organization_id
    writes = CreateWrites(engine)
    naive = {**params(org, "naive"), "created_at": datetime.now()}  # noqa: DTZ005 - the point of the test
    with pytest.raises(ValueError, match="naive datetime"):
        await writes.write(CLAIM, naive)
    assert writes.round_trips == 0


async def test_connections_are_kept_between_writes_and_handed_back_on_close(engine: AsyncEngine) -> None:
    org = (await make_tenant(create_sessionmaker(engine))).organization_id
    writes = CreateWrites(engine)
    for _ in range(10):
        assert await writes.write(ROW, row_params(org)) is True
    assert writes.connections_opened == 1
    assert checked_out(engine) == 1
    in_flight = asyncio.ensure_future(writes.write(ROW, row_params(org)))
    await asyncio.sleep(0)  # the write is queued, not yet sent
    await writes.close()  # sends it and waits for it
    assert (await rows_and_claims(engine, org))[0] == 11
    assert checked_out(engine) == 0
    assert await in_flight is True
    assert await writes.write(ROW, row_params(org)) is True  # after close: a connection per write
    assert checked_out(engine) == 0


async def test_a_connection_unused_for_a_while_goes_back_to_the_pool(engine: AsyncEngine) -> None:
    org = (await make_tenant(create_sessionmaker(engine))).organization_id
    writes = CreateWrites(engine, max_idle_s=0.2)
    assert await writes.write(ROW, row_params(org)) is True
    assert checked_out(engine) == 1
    await asyncio.sleep(0.5)  # no write meanwhile
    assert checked_out(engine) == 0
    assert await writes.write(ROW, row_params(org)) is True
    assert writes.connections_opened == 2
    await writes.close()


async def test_held_connections_the_server_closed_cost_no_create(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """E.g. after a database restart: the write fails on its dead connection, every held one is let
    go, and the create is sent again on a connection from the pool (whose pre-ping checks it)."""
    org = (await make_tenant(create_sessionmaker(engine))).organization_id
    writes = CreateWrites(engine, max_batch=1)  # two writes in flight: two connections held
    assert await asyncio.gather(*(writes.write(ROW, row_params(org)) for _ in range(2))) == [True, True]
    assert writes.connections_opened == 2
    pids = [await backend_pid(conn) for conn, _ in writes._held]
    async with engine.connect() as conn:
        for pid in pids:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    for _ in range(2):
        assert await writes.write(ROW, row_params(org)) is True
    assert (await rows_and_claims(engine, org))[0] == 4
    # One failed write (the other dead connection was let go with it), then one fresh connection.
    assert caplog.text.count("writing them one by one") == 1
    assert writes.connections_opened == 3
    await writes.close()


def checked_out(engine: AsyncEngine) -> int:
    return int(engine.pool.checkedout())  # type: ignore[attr-defined]


async def backend_pid(conn: AsyncConnection) -> int:
    raw = await conn.get_raw_connection()
    assert raw.driver_connection is not None
    return int(raw.driver_connection.info.backend_pid)
