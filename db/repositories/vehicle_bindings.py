"""Which vehicle a driver reports positions for (the socket server's /ws/driver, api/sockets/driver.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Driver, User


@dataclass(frozen=True, slots=True)
class DriverBinding:
    driver_id: uuid.UUID
    vehicle_id: uuid.UUID | None
    user_active: bool


async def driver_binding(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
) -> DriverBinding | None:
    """The active driver of this user in this organization, with their vehicle (if any) and whether
    their user is active; None if there is no such driver."""
    row = (
        await session.execute(
            select(Driver.id, Driver.vehicle_id, User.active)
            .join(User, User.id == Driver.user_id)
            .where(
                Driver.user_id == user_id,
                Driver.organization_id == organization_id,
                Driver.active.is_(True),
            )
        )
    ).first()
    return DriverBinding(row.id, row.vehicle_id, row.active) if row is not None else None
