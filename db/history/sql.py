"""History store on the system-of-record database (the embedded default; SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, Table, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.base import utcnow
from db.history.base import DeliveryEvent, Position, check_range, dedupe_batch, record_fields, record_from
from db.models.history import DeliveryEventRow, PositionRow
from db.upsert import insert_ignoring

# 12 bound columns per row: stays far below SQLite's 32766 and PostgreSQL's 65535 parameters.
INSERT_CHUNK = 500

# PostgreSQL: one statement per batch whatever its size, with one array parameter per column. Its text
# never changes, so neither SQLAlchemy nor psycopg parse or compile it again; a multi-row VALUES
# statement differs with every row count and cost more CPU to build than the write itself (about
# 0.3 ms per position, on the socket server's event loop). DO NOTHING also skips repeats within the
# batch; the command tag counts exactly the inserted rows. Parameters go in binary (`%b`): psycopg
# dumps binary arrays in C, text arrays element by element in Python (about 10x the CPU).
_PG_APPEND_POSITIONS = """
INSERT INTO position_history (organization_id, vehicle_id, driver_id, seq, recorded_at, received_at,
                              lat, lon, accuracy_m, speed_mps, heading_deg)
SELECT o, v, d, s, r, %(received_at)b, la, lo, a, sp, h
FROM unnest(%(o)b::uuid[], %(v)b::uuid[], %(d)b::uuid[], %(s)b::int8[], %(r)b::timestamptz[],
            %(la)b::float8[], %(lo)b::float8[], %(a)b::float8[], %(sp)b::float8[], %(h)b::float8[])
     AS t(o, v, d, s, r, la, lo, a, sp, h)
ON CONFLICT (vehicle_id, recorded_at, seq) DO NOTHING
"""

_POSITION_KEY = ["vehicle_id", "recorded_at", "seq"]
_EVENT_KEY = ["workflow_id", "sequence"]


class SqlHistoryStore:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @staticmethod
    def _dialect(session: AsyncSession) -> str:
        return session.get_bind().dialect.name

    async def append_positions(self, batch: Sequence[Position]) -> int:
        for position in batch:
            if type(position) is not Position and not isinstance(position, Position):
                raise TypeError(f"expected Position, got {type(position).__name__}")
        if not batch:
            return 0
        received_at = utcnow()
        table = PositionRow.__table__
        assert isinstance(table, Table)
        stored = 0
        async with self._sessionmaker() as session, session.begin():
            dialect = self._dialect(session)
            if dialect == "postgresql":
                # ON CONFLICT DO NOTHING skips repeats within the statement too: no dedupe pass needed.
                return await self._append_positions_pg(session, batch, received_at)
            unique = dedupe_batch(batch)
            rows = [
                {
                    "organization_id": p.organization_id,
                    "vehicle_id": p.vehicle_id,
                    "driver_id": p.driver_id,
                    "seq": p.seq,
                    "recorded_at": p.recorded_at,
                    "received_at": received_at,
                    "lat": p.lat,
                    "lon": p.lon,
                    "accuracy_m": p.accuracy_m,
                    "speed_mps": p.speed_mps,
                    "heading_deg": p.heading_deg,
                }
                for p in unique
            ]
            base = insert_ignoring(dialect, table, _POSITION_KEY)
            for start in range(0, len(rows), INSERT_CHUNK):
                # RETURNING counts exactly the inserted rows; rowcount is unreliable for INSERTs.
                stmt = base.values(rows[start : start + INSERT_CHUNK]).returning(table.c.id)
                stored += len((await session.execute(stmt)).all())
        return stored

    @staticmethod
    async def _append_positions_pg(
        session: AsyncSession, batch: Sequence[Position], received_at: datetime
    ) -> int:
        params = {
            "received_at": received_at,
            "o": [p.organization_id for p in batch],
            "v": [p.vehicle_id for p in batch],
            "d": [p.driver_id for p in batch],
            "s": [p.seq for p in batch],
            "r": [p.recorded_at for p in batch],
            "la": [p.lat for p in batch],
            "lo": [p.lon for p in batch],
            "a": [p.accuracy_m for p in batch],
            "sp": [p.speed_mps for p in batch],
            "h": [p.heading_deg for p in batch],
        }
        raw = await (await session.connection()).get_raw_connection()
        pg = raw.driver_connection  # psycopg's AsyncConnection, inside the session's transaction
        assert pg is not None
        async with pg.cursor() as cursor:
            await cursor.execute(_PG_APPEND_POSITIONS, params)
            return max(0, int(cursor.rowcount))

    async def positions(
        self, organization_id: UUID, vehicle_id: UUID, since: datetime, until: datetime, limit: int = 1000
    ) -> list[Position]:
        start, end = check_range(since, until, limit)
        stmt = (
            select(PositionRow)
            .where(
                PositionRow.organization_id == organization_id,
                PositionRow.vehicle_id == vehicle_id,
                PositionRow.recorded_at >= start,
                PositionRow.recorded_at < end,
            )
            .order_by(PositionRow.recorded_at, PositionRow.seq)
            .limit(limit)
        )
        return [record_from(Position, r) for r in await self._rows(stmt)]

    async def append_event(self, event: DeliveryEvent) -> bool:
        table = DeliveryEventRow.__table__
        assert isinstance(table, Table)
        row = record_fields(event)
        async with self._sessionmaker() as session, session.begin():
            stmt = (
                insert_ignoring(self._dialect(session), table, _EVENT_KEY).values(row).returning(table.c.id)
            )
            return (await session.execute(stmt)).first() is not None

    async def events(self, organization_id: UUID, delivery_id: UUID) -> list[DeliveryEvent]:
        stmt = (
            select(DeliveryEventRow)
            .where(
                DeliveryEventRow.organization_id == organization_id,
                DeliveryEventRow.delivery_id == delivery_id,
            )
            .order_by(DeliveryEventRow.sequence, DeliveryEventRow.workflow_id)
        )
        return [record_from(DeliveryEvent, r, data=dict(r.data)) for r in await self._rows(stmt)]

    async def _rows(self, stmt: Select[Any]) -> Sequence[Any]:
        async with self._sessionmaker() as session:
            return (await session.scalars(stmt)).all()

    async def ping(self) -> None:
        async with self._sessionmaker() as session:
            await session.execute(text("SELECT 1"))

    async def close(self) -> None:
        """Nothing to release: the engine belongs to whoever built the sessionmaker."""
