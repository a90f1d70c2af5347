"""Live tracking over REST: vehicle positions, nearby search, stored tracks, delivery tracking and
customer tracking links (docs/api.md "Live tracking").

Registered before the vehicles router, so `/vehicles/nearby` is not taken for a vehicle id.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from api.deps import CurrentUser, ResourcesDep, SessionDep, require_roles
from api.errors import PROBLEM_JSON, ProblemError, not_found
from api.schemas.common import Coordinates
from api.schemas.tracking import (
    DeliveryTrackingOut,
    NearbyOut,
    NearbyVehicleOut,
    PublicTrackingOut,
    ShareIn,
    ShareOut,
    TrackOut,
    VehiclePositionOut,
)
from api.services.audit import audit_by
from api.services.deliveries import load_row
from api.services.live_tracking import (
    cache_unavailable,
    delivery_tracking,
    latest_position,
    latest_positions,
    point_out,
    simplified,
)
from api.services.tracking_links import link_not_found, public_view, read_link, share_ttl, share_url
from api.v1 import PREFIX
from db.bus.base import GEO_MAX_LAT
from db.models import DeliveryRow, Vehicle
from db.repositories.fleet import DriverRepository, VehicleRepository
from domain.roles import ALL_ROLES, FLEET_WRITERS, Role

router = APIRouter(prefix=PREFIX)
log = logging.getLogger(__name__)
# Positions reveal where every driver is: staff only. Drivers follow their own deliveries below.
STAFF = frozenset({Role.ADMIN, Role.DISPATCHER, Role.VIEWER})
StaffReader = Annotated[CurrentUser, Depends(require_roles(*STAFF))]
Reader = Annotated[CurrentUser, Depends(require_roles(*ALL_ROLES))]
Writer = Annotated[CurrentUser, Depends(require_roles(*FLEET_WRITERS))]
SHARED = "tracking_link_shared"  # audit action


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"description": "problem details", "content": {PROBLEM_JSON: {}}} for s in statuses}


async def _vehicle(session: SessionDep, user: CurrentUser, vehicle_id: uuid.UUID) -> Vehicle:
    vehicle = await VehicleRepository(session, user.organization_id).get(vehicle_id)
    if vehicle is None:
        raise not_found("vehicle", vehicle_id)
    return vehicle


# Vehicles ------------------------------------------------------------------------------------


@router.get(
    "/vehicles/nearby",
    tags=["tracking"],
    response_model=NearbyOut,
    responses=_problems(400, 503),
    summary="Vehicles near a point, nearest first",
)
async def nearby(
    user: StaffReader,
    session: SessionDep,
    resources: ResourcesDep,
    lat: Annotated[float, Query(ge=-GEO_MAX_LAT, le=GEO_MAX_LAT, allow_inf_nan=False)],
    lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    radius_m: Annotated[float, Query(gt=0, allow_inf_nan=False, description="search radius (metres)")] = 1000,
    limit: Annotated[int, Query(ge=1, description="most vehicles to return")] = 50,
) -> NearbyOut:
    s = resources.settings
    if radius_m > s.tracking_nearby_max_radius_m:
        raise ProblemError(
            400, "radius_too_large", f"radius_m may be at most {s.tracking_nearby_max_radius_m:g}"
        )
    if limit > s.tracking_nearby_max_limit:
        raise ProblemError(400, "limit_too_large", f"limit may be at most {s.tracking_nearby_max_limit}")
    org = user.organization_id
    try:
        found = await resources.cache_bus.nearby(org, lat, lon, radius_m, limit)
    except Exception as exc:
        log.warning("nearby search failed: %s", exc)
        raise cache_unavailable() from None
    # The cache may still hold vehicles deleted since: answer only with ones that exist.
    ids = [n.vehicle_id for n in found]
    rows = (
        await VehicleRepository(session, org).list(after=None, limit=len(ids), filters=[Vehicle.id.in_(ids)])
        if ids
        else []
    )
    vehicles = {v.id: v for v in rows}
    kept = [n for n in found if n.vehicle_id in vehicles]
    now = datetime.now(UTC)
    positions = await latest_positions(resources.cache_bus, org, [n.vehicle_id for n in kept], now)
    return NearbyOut(
        center=Coordinates(lat=lat, lon=lon),
        radius_m=radius_m,
        items=[
            NearbyVehicleOut(
                vehicle_id=n.vehicle_id, name=vehicles[n.vehicle_id].name, distance_m=n.distance_m, position=p
            )
            for n, p in zip(kept, positions, strict=True)
        ],
    )


@router.get(
    "/vehicles/{vehicle_id}/position",
    tags=["tracking"],
    response_model=VehiclePositionOut,
    responses=_problems(404, 503),
    summary="The vehicle's latest accepted position",
)
async def position(
    vehicle_id: uuid.UUID, user: StaffReader, session: SessionDep, resources: ResourcesDep
) -> VehiclePositionOut:
    await _vehicle(session, user, vehicle_id)
    found = await latest_position(resources.cache_bus, user.organization_id, vehicle_id, datetime.now(UTC))
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


@router.get(
    "/vehicles/{vehicle_id}/track",
    tags=["tracking"],
    response_model=TrackOut,
    responses=_problems(400, 404),
    summary="The vehicle's stored positions in a time range, optionally simplified",
)
async def track(
    vehicle_id: uuid.UUID,
    user: StaffReader,
    session: SessionDep,
    resources: ResourcesDep,
    from_: Annotated[
        datetime | None, Query(alias="from", description="start, inclusive (default: an hour before `to`)")
    ] = None,
    to: Annotated[datetime | None, Query(description="end, exclusive (default: now)")] = None,
    simplify_m: Annotated[
        float | None,
        Query(ge=0, le=10_000, allow_inf_nan=False, description="Douglas-Peucker tolerance (metres)"),
    ] = None,
) -> TrackOut:
    s = resources.settings
    end = _utc(to, "to") if to is not None else datetime.now(UTC)
    try:
        start = _utc(from_, "from") if from_ is not None else end - timedelta(hours=1)
    except OverflowError:
        raise ProblemError(400, "invalid_range", "from is out of range") from None
    if end < start:
        raise ProblemError(400, "invalid_range", "to must not be before from")
    if end - start > timedelta(seconds=s.tracking_track_max_span_seconds):
        raise ProblemError(
            400,
            "range_too_long",
            f"a track may span at most {s.tracking_track_max_span_seconds} s; ask for a shorter range",
        )
    await _vehicle(session, user, vehicle_id)
    cap = s.tracking_track_max_points
    stored = await resources.history.positions(user.organization_id, vehicle_id, start, end, limit=cap + 1)
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


# Deliveries ----------------------------------------------------------------------------------


async def _readable_delivery(session: SessionDep, user: CurrentUser, delivery_id: uuid.UUID) -> DeliveryRow:
    row = await load_row(session, user.organization_id, delivery_id)
    if user.role is Role.DRIVER:
        me = await DriverRepository(session, user.organization_id).by_user(user.id)
        if me is None or row.driver_id != me.id:
            # Drivers see only the deliveries assigned to them; others do not exist for them.
            raise not_found("delivery", delivery_id)
    return row


@router.get(
    "/deliveries/{delivery_id}/tracking",
    tags=["tracking"],
    response_model=DeliveryTrackingOut,
    responses=_problems(404, 503),
    summary="A delivery's status, its vehicle's latest position and the drop-off ETA",
)
async def delivery_tracking_view(
    delivery_id: uuid.UUID, user: Reader, session: SessionDep, resources: ResourcesDep
) -> DeliveryTrackingOut:
    row = await _readable_delivery(session, user, delivery_id)
    return await delivery_tracking(session, resources.cache_bus, row, datetime.now(UTC))


@router.post(
    "/deliveries/{delivery_id}/tracking/share",
    tags=["tracking"],
    status_code=201,
    response_model=ShareOut,
    responses=_problems(400, 404),
    summary="A tracking link for the delivery's customer (no login needed to open it)",
)
async def share(
    delivery_id: uuid.UUID,
    user: Writer,
    session: SessionDep,
    resources: ResourcesDep,
    request: Request,
    body: ShareIn | None = None,
) -> ShareOut:
    ttl = share_ttl(resources.settings, body.ttl_seconds if body is not None else None)
    row = await load_row(session, user.organization_id, delivery_id)
    issued = resources.tokens.issue_share(delivery_id=row.id, organization_id=row.organization_id, ttl=ttl)
    # A link shows a vehicle's position to whoever holds it: record who handed one out.
    audit_by(
        session,
        request,
        user,
        SHARED,
        target_type="delivery",
        target_id=row.id,
        link_id=str(issued.jti),
        expires_at=issued.expires_at.isoformat(),
    )
    await session.commit()
    return ShareOut(
        token=issued.token, url=share_url(resources.settings, issued.token), expires_at=issued.expires_at
    )


# Public --------------------------------------------------------------------------------------


@router.get(
    "/public/tracking/{token}",
    tags=["tracking"],
    response_model=PublicTrackingOut,
    responses=_problems(404, 410, 503),
    summary="Follow a delivery with a tracking link (no login)",
)
async def public_tracking(
    token: Annotated[str, Path(max_length=4096)], session: SessionDep, resources: ResourcesDep
) -> PublicTrackingOut:
    claims = read_link(resources.tokens, token)
    row = await session.get(DeliveryRow, claims.delivery_id)
    if row is None or row.organization_id != claims.organization_id:
        raise link_not_found()
    full = await delivery_tracking(session, resources.cache_bus, row, datetime.now(UTC))
    return public_view(full, claims)
