"""Live tracking over REST: vehicle positions, nearby search, stored tracks, delivery tracking and
customer tracking links (docs/api.md "Live tracking").

Registered before the vehicles router, so `/vehicles/nearby` is not taken for a vehicle id.
Positions reveal where every driver is: staff only. Drivers follow their own deliveries.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Request

from api.deps import Reader, ResourcesDep, SessionDep, Staff, Writer
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

router = APIRouter(prefix=PREFIX, tags=["tracking"])
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


Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def _route(
    method: str, path: str, model: Any, problems: tuple[int, ...], summary: str, **kw: Any
) -> Callable[[Endpoint], Endpoint]:
    """A route decorator: its response model, the problem statuses it documents, its summary."""
    responses: dict[int | str, dict[str, Any]] = {
        s: {"description": "problem details", "content": {PROBLEM_JSON: {}}} for s in problems
    }
    return router.api_route(
        path, methods=[method], response_model=model, responses=responses, summary=summary, **kw
    )


# Vehicles ------------------------------------------------------------------------------------


@_route("GET", "/vehicles/nearby", NearbyOut, (400, 503), "Vehicles near a point, nearest first")
async def nearby(
    user: Staff,
    session: SessionDep,
    resources: ResourcesDep,
    lat: Lat,
    lon: Lon,
    radius_m: Radius = 1000,
    limit: Annotated[int, Query(ge=1, description="most vehicles to return")] = 50,
) -> NearbyOut:
    center = Coordinates(lat=lat, lon=lon)
    return await vehicles.nearby(session, resources, user.organization_id, center, radius_m, limit)


@_route(
    "GET",
    "/vehicles/{vehicle_id}/position",
    VehiclePositionOut,
    (404, 503),
    "The vehicle's latest accepted position",
)
async def position(
    vehicle_id: uuid.UUID, user: Staff, session: SessionDep, resources: ResourcesDep
) -> VehiclePositionOut:
    return await vehicles.position(session, resources, user.organization_id, vehicle_id)


@_route(
    "GET",
    "/vehicles/{vehicle_id}/track",
    TrackOut,
    (400, 404),
    "The vehicle's stored positions in a time range, optionally simplified",
)
async def track(
    vehicle_id: uuid.UUID,
    user: Staff,
    session: SessionDep,
    resources: ResourcesDep,
    from_: From = None,
    to: To = None,
    simplify_m: Tolerance = None,
) -> TrackOut:
    span = (from_, to)
    return await vehicles.track(session, resources, user.organization_id, vehicle_id, span, simplify_m)


# Deliveries ----------------------------------------------------------------------------------


@_route(
    "GET",
    "/deliveries/{delivery_id}/tracking",
    DeliveryTrackingOut,
    (404, 503),
    "A delivery's status, its vehicle's latest position and the drop-off ETA",
)
async def delivery_tracking_view(
    delivery_id: uuid.UUID, user: Reader, session: SessionDep, resources: ResourcesDep
) -> DeliveryTrackingOut:
    row, _ = await own_row(session, user, delivery_id)
    return await delivery_tracking(session, resources.cache_bus, row, datetime.now(UTC))


@_route(
    "POST",
    "/deliveries/{delivery_id}/tracking/share",
    ShareOut,
    (400, 404),
    "A tracking link for the delivery's customer (no login needed to open it)",
    status_code=201,
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


@_route(
    "GET",
    "/public/tracking/{token}",
    PublicTrackingOut,
    (404, 410, 503),
    "Follow a delivery with a tracking link (no login)",
)
async def public_tracking(
    token: Annotated[str, Path(max_length=4096)], session: SessionDep, resources: ResourcesDep
) -> PublicTrackingOut:
    return await links.public_tracking(session, resources, token)
