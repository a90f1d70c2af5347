"""Vehicles' positions over REST: those near a point, a vehicle's latest one, its stored track.
The bounds a request may ask for are settings (WAYBILL_TRACKING_*)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ProblemError, not_found
from api.resources import Resources
from api.schemas.common import Coordinates
from api.schemas.tracking import NearbyOut, NearbyVehicleOut, TrackOut, VehiclePositionOut
from api.services.live_tracking import (
    cache_unavailable,
    latest_position,
    latest_positions,
    point_out,
    simplified,
)
from db.repositories.fleet import VehicleRepository

log = logging.getLogger(__name__)


async def require_vehicle(session: AsyncSession, org: uuid.UUID, vehicle_id: uuid.UUID) -> None:
    if await VehicleRepository(session, org).get(vehicle_id) is None:
        raise not_found("vehicle", vehicle_id)


async def nearby(
    session: AsyncSession,
    resources: Resources,
    org: uuid.UUID,
    center: Coordinates,
    radius_m: float,
    limit: int,
) -> NearbyOut:
    s = resources.settings
    if radius_m > s.tracking_nearby_max_radius_m:
        raise ProblemError(
            400, "radius_too_large", f"radius_m may be at most {s.tracking_nearby_max_radius_m:g}"
        )
    if limit > s.tracking_nearby_max_limit:
        raise ProblemError(400, "limit_too_large", f"limit may be at most {s.tracking_nearby_max_limit}")
    try:
        found = await resources.cache_bus.nearby(org, center.lat, center.lon, radius_m, limit)
    except Exception as exc:
        log.warning("nearby search failed: %s", exc)
        raise cache_unavailable() from None
    # The cache may still hold vehicles deleted since: answer only with ones that exist.
    vehicles = {
        v.id: v for v in await VehicleRepository(session, org).get_many([n.vehicle_id for n in found])
    }
    kept = [n for n in found if n.vehicle_id in vehicles]
    positions = await latest_positions(
        resources.cache_bus, org, [n.vehicle_id for n in kept], datetime.now(UTC)
    )
    return NearbyOut(
        center=center,
        radius_m=radius_m,
        items=[
            NearbyVehicleOut(
                vehicle_id=n.vehicle_id, name=vehicles[n.vehicle_id].name, distance_m=n.distance_m, position=p
            )
            for n, p in zip(kept, positions, strict=True)
        ],
    )


async def position(
    session: AsyncSession, resources: Resources, org: uuid.UUID, vehicle_id: uuid.UUID
) -> VehiclePositionOut:
    await require_vehicle(session, org, vehicle_id)
    found = await latest_position(resources.cache_bus, org, vehicle_id, datetime.now(UTC))
    if found is None:
        raise ProblemError(404, "position_not_found", f"vehicle {vehicle_id} has not reported a position yet")
    return found


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ProblemError(400, "naive_datetime", f"{name}: give date-times with a UTC offset")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ProblemError(400, "invalid_range", f"{name} is out of range") from None


def _span(resources: Resources, from_: datetime | None, to: datetime | None) -> tuple[datetime, datetime]:
    """[start, end) of a track request: to defaults to now, from to an hour before it."""
    end = _utc(to, "to") if to is not None else datetime.now(UTC)
    try:
        start = _utc(from_, "from") if from_ is not None else end - timedelta(hours=1)
    except OverflowError:
        raise ProblemError(400, "invalid_range", "from is out of range") from None
    if end < start:
        raise ProblemError(400, "invalid_range", "to must not be before from")
    longest = resources.settings.tracking_track_max_span_seconds
    if end - start > timedelta(seconds=longest):
        raise ProblemError(
            400, "range_too_long", f"a track may span at most {longest} s; ask for a shorter range"
        )
    return start, end


async def track(
    session: AsyncSession,
    resources: Resources,
    org: uuid.UUID,
    vehicle_id: uuid.UUID,
    span: tuple[datetime | None, datetime | None],
    simplify_m: float | None,
) -> TrackOut:
    """The stored positions in [from, to), Douglas-Peucker-simplified at `simplify_m` if given."""
    start, end = _span(resources, *span)
    await require_vehicle(session, org, vehicle_id)
    cap = resources.settings.tracking_track_max_points
    stored = await resources.history.positions(org, vehicle_id, start, end, limit=cap + 1)
    if len(stored) > cap:
        raise ProblemError(
            400,
            "too_many_points",
            f"more than {cap} positions in this range; ask for a shorter one",
            max_points=cap,
        )
    kept = await simplified(stored, simplify_m)
    return TrackOut(
        vehicle_id=vehicle_id,
        from_=start,
        to=end,
        simplify_m=simplify_m,
        stored_points=len(stored),
        points=[point_out(p) for p in kept],
    )
