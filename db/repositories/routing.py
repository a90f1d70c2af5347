"""What route planning reads to build a routing problem: the depot, its vehicles and their drivers,
and the deliveries to plan, all of one organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import DeliveryRow, Depot, Driver, Vehicle


async def organization_depot(
    session: AsyncSession, organization_id: uuid.UUID, depot_id: uuid.UUID
) -> Depot | None:
    """The depot, if it is the organization's."""
    depot = await session.get(Depot, depot_id)
    return depot if depot is not None and depot.organization_id == organization_id else None


async def planning_vehicles(
    session: AsyncSession,
    organization_id: uuid.UUID,
    depot_id: uuid.UUID,
    vehicle_ids: Sequence[uuid.UUID] | None,
) -> list[Vehicle]:
    """The active vehicles named, or else those based at the depot, by name."""
    q = select(Vehicle).where(Vehicle.organization_id == organization_id, Vehicle.active.is_(True))
    if vehicle_ids is not None:
        q = q.where(Vehicle.id.in_(vehicle_ids))
    else:
        q = q.where(Vehicle.home_depot_id == depot_id)
    return list((await session.scalars(q.order_by(Vehicle.name))).all())


async def drivers_of_vehicles(
    session: AsyncSession, organization_id: uuid.UUID, vehicle_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID | None, Driver]:
    """The active driver of each vehicle, by vehicle id."""
    drivers = await session.scalars(
        select(Driver).where(
            Driver.organization_id == organization_id,
            Driver.active.is_(True),
            Driver.vehicle_id.in_(vehicle_ids),
        )
    )
    return {d.vehicle_id: d for d in drivers.all()}


async def deliveries_to_plan(
    session: AsyncSession,
    organization_id: uuid.UUID,
    statuses: Sequence[str],
    delivery_ids: Sequence[uuid.UUID] | None,
) -> list[DeliveryRow]:
    """The deliveries named (whatever their status), or else those in `statuses`, by id."""
    if delivery_ids is not None:
        q = select(DeliveryRow).where(
            DeliveryRow.organization_id == organization_id, DeliveryRow.id.in_(delivery_ids)
        )
    else:
        q = select(DeliveryRow).where(
            DeliveryRow.organization_id == organization_id, DeliveryRow.status.in_(statuses)
        )
    return list((await session.scalars(q.order_by(DeliveryRow.id))).all())
