"""The lookups and writes of `waybill seed` (tools/seed.py): the demo organization's depot, vans,
users and drivers. They flush but never commit (the seed commits once at the end)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.base import Base
from db.models import Depot, User, Vehicle


async def add_rows(session: AsyncSession, rows: Iterable[Base]) -> None:
    """Add new rows and flush, so that their ids (and defaults) are set."""
    session.add_all(list(rows))
    await session.flush()


async def first_depot_id(session: AsyncSession, organization_id: uuid.UUID) -> uuid.UUID | None:
    """The organization's oldest depot."""
    found: uuid.UUID | None = await session.scalar(
        select(Depot.id).where(Depot.organization_id == organization_id).order_by(Depot.created_at).limit(1)
    )
    return found


async def vehicles_by_name(session: AsyncSession, organization_id: uuid.UUID) -> dict[str, Vehicle]:
    vehicles = await session.scalars(select(Vehicle).where(Vehicle.organization_id == organization_id))
    return {v.name: v for v in vehicles}


async def email_taken(session: AsyncSession, email: str) -> bool:
    return await session.scalar(select(User.id).where(User.email == email)) is not None
