"""Live tracking over REST: vehicle positions, nearby search, stored tracks, delivery tracking and
customer tracking links (docs/api.md "Live tracking").

Registered before the vehicles router, so `/vehicles/nearby` is not taken for a vehicle id.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from api.deps import CurrentUser, ResourcesDep, SessionDep, require_roles
from api.errors import PROBLEM_JSON
from api.schemas.common import Coordinates
from api.schemas.tracking import (
    DeliveryTrackingOut,
    NearbyOut,
    PublicTrackingOut,
    ShareIn,
    ShareOut,
    TrackOut,
    VehiclePositionOut,
)
from api.services import tracking_links as links
from api.services import vehicle_tracking as vehicles
from api.services.deliveries import own_row
from api.services.live_tracking import delivery_tracking
from api.v1 import PREFIX
from domain.positions import GEO_MAX_LAT
from domain.roles import ALL_ROLES, FLEET_WRITERS, Role

router = APIRouter(prefix=PREFIX, tags=["tracking"])
# Positions reveal where every driver is: staff only. Drivers follow their own deliveries below.
STAFF = frozenset({Role.ADMIN, Role.DISPATCHER, Role.VIEWER})
StaffReader = Annotated[CurrentUser, Depends(require_roles(*STAFF))]
Reader = Annotated[CurrentUser, Depends(require_roles(*ALL_ROLES))]
Writer = Annotated[CurrentUser, Depends(require_roles(*FLEET_WRITERS))]
Lat = Annotated[float, Query(ge=-GEO_MAX_LAT, le=GEO_MAX_LAT, allow_inf_nan=False)]
Lon = Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)]
Radius = Annotated[float, Query(gt=0, allow_inf_nan=False, description="search radius (metres)")]
From = Annotated[
    datetime | None, Query(alias="from", description="start, inclusive (default: an hour before `to`)")
]
To = Annotated[datetime | None, Query(description="end, exclusive (default: now)")]
Tolerance = Annotated[
    float | None,
    Query(ge=0, le=10_000, allow_inf_nan=False, description="Douglas-Peucker tolerance (metres)"),
]


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"description": "problem details", "content": {PROBLEM_JSON: {}}} for s in statuses}


# Vehicles ------------------------------------------------------------------------------------


@router.get(
    "/vehicles/nearby",
    response_model=NearbyOut,
    responses=_problems(400, 503),
    summary="Vehicles near a point, nearest first",
)
async def nearby(
    user: StaffReader,
    session: SessionDep,
    resources: ResourcesDep,
    lat: Lat,
    lon: Lon,
    radius_m: Radius = 1000,
    limit: Annotated[int, Query(ge=1, description="most vehicles to return")] = 50,
) -> NearbyOut:
    center = Coordinates(lat=lat, lon=lon)
    return await vehicles.nearby(session, resources, user.organization_id, center, radius_m, limit)


@router.get(
    "/vehicles/{vehicle_id}/position",
    response_model=VehiclePositionOut,
    responses=_problems(404, 503),
    summary="The vehicle's latest accepted position",
)
async def position(
    vehicle_id: uuid.UUID, user: StaffReader, session: SessionDep, resources: ResourcesDep
) -> VehiclePositionOut:
    return await vehicles.position(session, resources, user.organization_id, vehicle_id)


@router.get(
    "/vehicles/{vehicle_id}/track",
    response_model=TrackOut,
    responses=_problems(400, 404),
    summary="The vehicle's stored positions in a time range, optionally simplified",
)
async def track(
    vehicle_id: uuid.UUID,
    user: StaffReader,
    session: SessionDep,
    resources: ResourcesDep,
    from_: From = None,
    to: To = None,
    simplify_m: Tolerance = None,
) -> TrackOut:
    span = (from_, to)
    return await vehicles.track(session, resources, user.organization_id, vehicle_id, span, simplify_m)


# Deliveries ----------------------------------------------------------------------------------


@router.get(
    "/deliveries/{delivery_id}/tracking",
    response_model=DeliveryTrackingOut,
    responses=_problems(404, 503),
    summary="A delivery's status, its vehicle's latest position and the drop-off ETA",
)
async def delivery_tracking_view(
    delivery_id: uuid.UUID, user: Reader, session: SessionDep, resources: ResourcesDep
) -> DeliveryTrackingOut:
    row, _ = await own_row(session, user, delivery_id)
    return await delivery_tracking(session, resources.cache_bus, row, datetime.now(UTC))


@router.post(
    "/deliveries/{delivery_id}/tracking/share",
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
    ttl_seconds = body.ttl_seconds if body is not None else None
    return await links.share(session, resources, request, user, delivery_id, ttl_seconds)


# Public --------------------------------------------------------------------------------------


@router.get(
    "/public/tracking/{token}",
    response_model=PublicTrackingOut,
    responses=_problems(404, 410, 503),
    summary="Follow a delivery with a tracking link (no login)",
)
async def public_tracking(
    token: Annotated[str, Path(max_length=4096)], session: SessionDep, resources: ResourcesDep
) -> PublicTrackingOut:
    return await links.public_tracking(session, resources, token)
