"""What the delivery reconciler reads of the projection: open rows, a page at a time, and which
delivery ids have a row."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import DeliveryRow
from domain.delivery import TERMINAL

_TERMINAL = [s.value for s in TERMINAL]


async def open_rows_created_before(
    session: AsyncSession,
    cutoff: datetime,
    organization_id: uuid.UUID | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[DeliveryRow]:
    """Non-terminal rows created before `cutoff`, by id after `after` (keyset pages)."""
    query = (
        select(DeliveryRow)
        .where(DeliveryRow.status.not_in(_TERMINAL), DeliveryRow.created_at < cutoff)
        .order_by(DeliveryRow.id)
        .limit(limit)
    )
    if organization_id is not None:
        query = query.where(DeliveryRow.organization_id == organization_id)
    if after is not None:
        query = query.where(DeliveryRow.id > after)
    return list((await session.scalars(query)).all())


async def delivery_ids_with_rows(session: AsyncSession, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    return set((await session.scalars(select(DeliveryRow.id).where(DeliveryRow.id.in_(list(ids))))).all())
