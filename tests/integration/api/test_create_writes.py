"""Creates' claims and rows sent together on PostgreSQL (api/create_writes.py), against the real database.

- Concurrent creates share round trips, and every one of them gets its own answer and its own row.
- Two creates with one Idempotency-Key in the same round trip: one claim, one row.
- A create the database refuses fails alone: the others sent with it are written.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from api.create_writes import CreateWrites
from api.delivery_service import (
    _CLAIM_AND_ROW_PG,
    _ROW_PG,
    _claim_and_row_params,
    _initial_state,
    _row_values,
)
from api.schemas.deliveries import DeliveryCreate, to_spec
from db.models import DeliveryRow, IdempotencyKey
from db.session import create_engine, create_sessionmaker
from domain.ids import uuid7
from tests.support import make_tenant
from waybill.settings import to_async_url


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
    return _claim_and_row_params(row_params(org), key, "digest")


async def rows_and_claims(engine: AsyncEngine, org: uuid.UUID) -> tuple[int, int]:
    async with create_sessionmaker(engine)() as session:
        rows = await session.scalar(select(func.count()).where(DeliveryRow.organization_id == org))
        claims = await session.scalar(select(func.count()).where(IdempotencyKey.organization_id == org))
    return int(rows or 0), int(claims or 0)


async def test_concurrent_creates_share_round_trips_and_each_gets_its_row(engine: AsyncEngine) -> None:
    org = (await make_tenant(create_sessionmaker(engine))).organization_id
    writes = CreateWrites(engine, _CLAIM_AND_ROW_PG)
    results = await asyncio.gather(*(writes.write(params(org, f"k{i}")) for i in range(40)))
    assert results == [True] * 40
    assert writes.round_trips < 40 / 4, writes.round_trips
    assert await rows_and_claims(engine, org) == (40, 40)


async def test_one_key_twice_in_one_round_trip_claims_once(engine: AsyncEngine) -> None:
    org = (await make_tenant(create_sessionmaker(engine))).organization_id
    writes = CreateWrites(engine, _CLAIM_AND_ROW_PG)
    results = await asyncio.gather(writes.write(params(org, "same")), writes.write(params(org, "same")))
    assert writes.round_trips == 1
    assert sorted(results) == [False, True]
    assert await rows_and_claims(engine, org) == (1, 1)


async def test_a_refused_create_fails_alone(engine: AsyncEngine) -> None:
    org = (await make_tenant(create_sessionmaker(engine))).organization_id
    writes = CreateWrites(engine, _CLAIM_AND_ROW_PG)
    bad = params(uuid.uuid4(), "no-such-org")  # violates the organization foreign key
    first, refused, last = await asyncio.gather(
        writes.write(params(org, "a")),
        writes.write(bad),
        writes.write(params(org, "b")),
        return_exceptions=True,
    )
    # The refused statement rolled back the pipeline's others; written again alone, they are claimed.
    assert first is True
    assert last is True
    assert isinstance(refused, IntegrityError), refused  # SQLAlchemy's, as on the ORM path
    assert await rows_and_claims(engine, org) == (2, 2)


async def test_a_row_found_written_on_the_retry_counts_as_written(engine: AsyncEngine) -> None:
    """Rows without a key: after a failed pipeline, a row whose fresh id is taken was written by it."""
    org = (await make_tenant(create_sessionmaker(engine))).organization_id
    writes = CreateWrites(engine, _ROW_PG, duplicate_means_written=True)
    row = row_params(org)
    assert await writes.write(row) is True
    bad = row_params(uuid.uuid4())  # violates the organization foreign key: the pipeline fails
    again, refused, new = await asyncio.gather(
        writes.write(row), writes.write(bad), writes.write(row_params(org)), return_exceptions=True
    )
    assert again is True
    assert new is True
    assert isinstance(refused, IntegrityError), refused
    assert (await rows_and_claims(engine, org))[0] == 2
    plain = CreateWrites(engine, _ROW_PG)  # without the flag a taken id is an error
    taken, _ = await asyncio.gather(plain.write(row), plain.write(bad), return_exceptions=True)
    assert isinstance(taken, IntegrityError), taken


async def test_a_naive_datetime_is_refused_before_anything_is_sent(engine: AsyncEngine) -> None:
    org = (await make_tenant(create_sessionmaker(engine))).organization_id
    writes = CreateWrites(engine, _CLAIM_AND_ROW_PG)
    naive = {**params(org, "naive"), "created_at": datetime.now()}  # noqa: DTZ005 - the point of the test
    with pytest.raises(ValueError, match="naive datetime"):
        await writes.write(naive)
    assert writes.round_trips == 0
