"""What a dispatcher may follow on /ws/dispatch (api/sockets/dispatch.py): only the organization's own
vehicles, deliveries and routes, each with the vehicle whose positions it brings."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import DeliveryRow, RouteRow, Vehicle


@dataclass(frozen=True, slots=True)
class Followed:
    """A vehicle, delivery or route of the organization, and its vehicle (None: a delivery not yet
    assigned to one)."""

    vehicle_id: uuid.UUID | None


async def followed_vehicle(session: AsyncSession, org: uuid.UUID, vehicle_id: uuid.UUID) -> Followed | None:
    return await _first(
        session, select(Vehicle.id).where(Vehicle.id == vehicle_id, Vehicle.organization_id == org)
    )


async def followed_delivery(session: AsyncSession, org: uuid.UUID, delivery_id: uuid.UUID) -> Followed | None:
    stmt = select(DeliveryRow.vehicle_id).where(
        DeliveryRow.id == delivery_id, DeliveryRow.organization_id == org
    )
    return await _first(session, stmt)


async def followed_route(session: AsyncSession, org: uuid.UUID, route_id: str) -> Followed | None:
    return await _first(
        session, select(RouteRow.vehicle_id).where(RouteRow.id == route_id, RouteRow.organization_id == org)
    )


async def _first(session: AsyncSession, stmt: Select[Any]) -> Followed | None:
    row = (await session.execute(stmt)).first()
    return Followed(row[0]) if row is not None else None
