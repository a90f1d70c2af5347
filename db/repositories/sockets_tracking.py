"""What the socket server's tracker reads (api/sockets/arrivals.py): the vehicles' open routes from the
`routes` projection and the organization's depots, for arrivals, geofences and ETAs."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Depot, RouteRow
from domain.routes import RouteState
from plumbing.codec import from_jsonable


async def open_routes(session: AsyncSession, vehicle_ids: list[uuid.UUID]) -> dict[uuid.UUID, RouteState]:
    """Each vehicle's open route (the latest shift, then the latest updated), if it has one."""
    if not vehicle_ids:
        return {}
    rows = (
        await session.execute(
            select(RouteRow.vehicle_id, RouteRow.state)
            .where(RouteRow.vehicle_id.in_(vehicle_ids), RouteRow.status != "completed")
            .order_by(RouteRow.shift.desc(), RouteRow.updated_at.desc())
        )
    ).all()
    routes: dict[uuid.UUID, RouteState] = {}
    for vehicle_id, state in rows:
        if vehicle_id not in routes:  # the first is the latest
            routes[vehicle_id] = from_jsonable(RouteState, state)
    return routes


async def depot_points(
    session: AsyncSession, organization_id: uuid.UUID
) -> list[tuple[uuid.UUID, float, float]]:
    """The organization's depots as (id, lat, lon)."""
    rows = await session.execute(
        select(Depot.id, Depot.lat, Depot.lon).where(Depot.organization_id == organization_id)
    )
    return [(ident, lat, lon) for ident, lat, lon in rows]
