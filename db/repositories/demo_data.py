"""The writes and reads of the synthetic analytics history (tools/analytics_demo.py): a fleet's
vehicles with their depots, and projection rows written as they would have been."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import DeliveryRow, Depot, Driver, Vehicle
from db.upsert import insert_ignoring_into

# Where a vehicle without a home depot starts its synthetic day (Berlin).
DEFAULT_START = (52.52, 13.40)


@dataclass(frozen=True)
class FleetVehicle:
    vehicle_id: uuid.UUID
    driver_id: uuid.UUID | None
    depot_id: uuid.UUID | None
    lat: float
    lon: float


async def insert_delivery_rows(
    sessionmaker: async_sessionmaker[AsyncSession], rows: Sequence[dict[str, Any]]
) -> None:
    """Projection rows in one transaction; rows already there (same id) are left as they are."""
    if not rows:
        return
    async with sessionmaker() as session, session.begin():
        await session.execute(insert_ignoring_into(session, DeliveryRow, ["id"]), list(rows))


async def fleet_of(session: AsyncSession, organization_id: uuid.UUID) -> list[FleetVehicle]:
    """Every vehicle of the organization with its driver (if any) and its home depot's position."""
    depots = {
        d.id: d
        for d in (await session.scalars(select(Depot).where(Depot.organization_id == organization_id))).all()
    }
    drivers = {
        d.vehicle_id: d.id
        for d in (
            await session.scalars(select(Driver).where(Driver.organization_id == organization_id))
        ).all()
    }
    vehicles = (
        await session.scalars(select(Vehicle).where(Vehicle.organization_id == organization_id))
    ).all()
    fleet = []
    for v in vehicles:
        depot = depots.get(v.home_depot_id) if v.home_depot_id is not None else None
        lat, lon = (depot.lat, depot.lon) if depot is not None else DEFAULT_START
        fleet.append(FleetVehicle(v.id, drivers.get(v.id), v.home_depot_id, lat, lon))
    return fleet
