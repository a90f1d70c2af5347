"""The writes of a delivery create: its Idempotency-Key claim and its first projection row.

The statements of the common create (no external_ref) are built once: SQLAlchemy then only binds
parameters to a cached compiled form instead of building and hashing a new statement per request.
On PostgreSQL they go through the shared pipeline of concurrent creates (delivery_writes.py).
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import JSON, ColumnElement, String, Table, bindparam, delete, insert, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from db.models import DeliveryRow, IdempotencyKey
from db.repositories.delivery_writes import Statement, writes_for
from db.upsert import insert_ignoring

_DELIVERIES = cast(Table, DeliveryRow.__table__)
_KEYS = cast(Table, IdempotencyKey.__table__)
_ROW_COLUMNS = [c.name for c in _DELIVERIES.c if c.name != "id"]


def _row_param(name: str, dialect: str) -> ColumnElement[Any]:
    """The bind parameter of one column of a new row. `state` arrives as JSON text (encoded once by
    the caller): PostgreSQL casts it to json, SQLite stores the text as it is."""
    if name != "state":
        return bindparam(name, type_=_DELIVERIES.c[name].type)
    text = bindparam(name, type_=String())
    return sql_cast(text, JSON) if dialect == "postgresql" else text


_INSERT_ROW = {
    dialect: insert(_DELIVERIES).values({name: _row_param(name, dialect) for name in ["id", *_ROW_COLUMNS]})
    for dialect in ("postgresql", "sqlite")
}
_KEY_VALUES = {
    "organization_id": bindparam("organization_id", type_=_KEYS.c.organization_id.type),
    "key": bindparam("key", type_=_KEYS.c.key.type),
    "request_hash": bindparam("request_hash", type_=_KEYS.c.request_hash.type),
    "delivery_id": bindparam("delivery_id", type_=_KEYS.c.delivery_id.type),
    "created_at": bindparam("created_at", type_=_KEYS.c.created_at.type),
}
_CLAIM = {
    dialect: insert_ignoring(dialect, _KEYS, ["organization_id", "key"])
    .values(_KEY_VALUES)
    .returning(_KEYS.c.delivery_id)
    for dialect in ("postgresql", "sqlite")
}
# PostgreSQL: claim and projection row in one statement (a data-modifying CTE). The row is
# inserted only if the claim was, so both happen or neither does, in one round trip.
_claim_cte = _CLAIM["postgresql"].cte("claim")
CLAIM_AND_ROW_PG = Statement.compile(
    insert(_DELIVERIES)
    .from_select(
        ["id", *_ROW_COLUMNS],
        select(_claim_cte.c.delivery_id, *(_row_param(name, "postgresql") for name in _ROW_COLUMNS)),
    )
    .returning(_DELIVERIES.c.id)
)
# PostgreSQL without an Idempotency-Key: the row alone, RETURNING so that a batch reports each one.
ROW_PG = Statement.compile(
    _INSERT_ROW["postgresql"].returning(_DELIVERIES.c.id), duplicate_means_written=True
)


async def insert_new(session: AsyncSession, row: dict[str, Any], key: str | None, digest: str) -> bool:
    """Write the idempotency claim (with a key) and the projection row of a delivery without an
    external_ref; False if the key was claimed before (nothing written then). `row` holds the state
    as JSON text.

    Without an external_ref the row cannot conflict with another delivery, so no lookup is needed.
    On PostgreSQL claim and row are one statement, sent with those of concurrent creates
    (db/repositories/delivery_writes.py). On SQLite they are two autocommit statements: no BEGIN/COMMIT round
    trips, and the write lock is held for one statement, not across event loop turns. `session` is
    a fresh one (every caller opens one per create): no transaction is open on it, and it is
    committed here, which hands its connection back before the caller's Temporal call.
    """
    engine = session.bind
    if isinstance(engine, AsyncEngine) and engine.dialect.name == "postgresql":
        if key is None:
            return await writes_for(engine).write(ROW_PG, row)
        return await writes_for(engine).write(CLAIM_AND_ROW_PG, claim_and_row_params(row, key, digest))
    conn = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    dialect = conn.dialect.name
    try:
        if key is None:
            await conn.execute(_INSERT_ROW[dialect], row)
            return True
        # A crash between the two statements leaves a claim without a row: a retry with the key finds
        # the claim and writes the row (the replay path).
        if (await conn.execute(_CLAIM[dialect], claim_params(row, key, digest))).first() is None:
            return False
        await conn.execute(_INSERT_ROW[dialect], row)
        return True
    finally:
        await session.commit()  # hands the connection back before the Temporal call


def claim_and_row_params(row: dict[str, Any], key: str, digest: str) -> dict[str, Any]:
    """The parameters of `CLAIM_AND_ROW_PG`: the row's without "id" (an INSERT takes a parameter named
    like a column as that column's value; the row's id is the claim's delivery_id) and the claim's."""
    return {**{name: value for name, value in row.items() if name != "id"}, **claim_params(row, key, digest)}


def claim_params(row: dict[str, Any], key: str, digest: str) -> dict[str, Any]:
    return {
        "organization_id": row["organization_id"],
        "key": key,
        "request_hash": digest,
        "delivery_id": row["id"],
        "created_at": row["created_at"],
    }


async def claim_key(
    session: AsyncSession, org: uuid.UUID, key: str, digest: str, new_id: uuid.UUID
) -> tuple[uuid.UUID, str]:
    """The delivery id this Idempotency-Key stands for (the first request to claim it wins), and the
    request hash it was claimed with (`digest` when this request made the claim)."""
    dialect = session.get_bind().dialect.name
    # One statement in the common case: RETURNING yields a row only when this request made the claim.
    claimed = await session.execute(
        insert_ignoring(dialect, _KEYS, ["organization_id", "key"])
        .values(organization_id=org, key=key, request_hash=digest, delivery_id=new_id)
        .returning(_KEYS.c.delivery_id)
    )
    if claimed.first() is not None:
        return new_id, digest
    earlier = (
        await session.execute(
            select(_KEYS.c.request_hash, _KEYS.c.delivery_id).where(
                _KEYS.c.organization_id == org, _KEYS.c.key == key
            )
        )
    ).one()
    return earlier.delivery_id, earlier.request_hash


async def by_ref(session: AsyncSession, org: uuid.UUID, ref: str) -> DeliveryRow | None:
    stmt = select(DeliveryRow).where(DeliveryRow.organization_id == org, DeliveryRow.external_ref == ref)
    return (await session.scalars(stmt)).one_or_none()


async def insert_row(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a projection row (state as a JSON value) unless its id exists; True if this one did."""
    result = await session.execute(
        insert_ignoring(session.get_bind().dialect.name, _DELIVERIES, ["id"])
        .values(values)
        .returning(_DELIVERIES.c.id)
    )
    return result.first() is not None


async def delete_row(session: AsyncSession, delivery_id: uuid.UUID) -> None:
    await session.execute(delete(DeliveryRow).where(DeliveryRow.id == delivery_id))
