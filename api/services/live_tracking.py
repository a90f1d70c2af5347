"""Reading live tracking for the REST API: cached latest positions, stored tracks, delivery ETAs.

Everything here reads what the live pipeline and the workflows already stored: the latest-position
cache (written by api/sockets/ingest.py), the history store, and the `routes` projection, whose
state carries the route's ETAs and the ETA live tracking reported for the next stop. No workflow is
queried per request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ProblemError
from api.schemas.common import Coordinates
from api.schemas.tracking import (
    DeliveryTrackingOut,
    EtaSource,
    TrackPointOut,
    VehiclePositionOut,
)
from db.bus.base import CacheBus
from db.history.base import Position
from db.models import DeliveryRow
from db.repositories.routes import RouteRepository
from domain.delivery import DeliveryState
from domain.positions import simplify
from domain.routes import FINISHED, RouteState, StopStatus, estimate_etas
from plumbing.codec import from_jsonable

log = logging.getLogger(__name__)

# Douglas-Peucker is pure Python: long tracks are simplified off the event loop.
SIMPLIFY_IN_THREAD = 1_000


def cache_unavailable() -> ProblemError:
    return ProblemError(
        503,
        "cache_unavailable",
        "live positions are not reachable right now; retry shortly",
        headers={"Retry-After": "5"},
    )


def _finite_or_none(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def position_out(data: dict[str, Any], now: datetime) -> VehiclePositionOut | None:
    """The cached message (`fix_message`) as a response; None if it is not one (logged)."""
    try:
        recorded = datetime.fromisoformat(str(data["recorded_at"]))
        if recorded.tzinfo is None:
            raise ValueError("recorded_at has no zone")
        driver = data.get("driver_id")
        return VehiclePositionOut(
            vehicle_id=uuid.UUID(str(data["vehicle_id"])),
            driver_id=uuid.UUID(str(driver)) if driver else None,
            recorded_at=recorded.astimezone(UTC),
            location=Coordinates(lat=data["lat"], lon=data["lon"]),
            accuracy_m=_finite_or_none(data.get("accuracy_m")),
            speed_mps=_finite_or_none(data.get("speed_mps")),
            heading_deg=_finite_or_none(data.get("heading_deg")),
            age_seconds=max(0.0, (now - recorded).total_seconds()),
        )
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        log.warning("ignoring a malformed cached position: %s", exc)
        return None


async def latest_position(
    cache: CacheBus, org: uuid.UUID, vehicle_id: uuid.UUID, now: datetime
) -> VehiclePositionOut | None:
    try:
        data = await cache.get_latest(org, vehicle_id)
    except Exception as exc:
        log.warning("reading the latest position of %s failed: %s", vehicle_id, exc)
        raise cache_unavailable() from None
    return position_out(data, now) if data is not None else None


async def latest_positions(
    cache: CacheBus, org: uuid.UUID, vehicle_ids: list[uuid.UUID], now: datetime
) -> list[VehiclePositionOut | None]:
    return list(await asyncio.gather(*(latest_position(cache, org, v, now) for v in vehicle_ids)))


def point_out(p: Position) -> TrackPointOut:
    return TrackPointOut(
        recorded_at=p.recorded_at,
        location=Coordinates(lat=p.lat, lon=p.lon),
        accuracy_m=p.accuracy_m,
        speed_mps=p.speed_mps,
        heading_deg=p.heading_deg,
    )


async def simplified(positions: list[Position], tolerance_m: float | None) -> list[Position]:
    """The positions Douglas-Peucker keeps at `tolerance_m` (all of them without one)."""
    if not tolerance_m or len(positions) <= 2:
        return positions
    points = [(p.lat, p.lon) for p in positions]
    if len(points) > SIMPLIFY_IN_THREAD:
        keep = await asyncio.to_thread(simplify, points, tolerance_m)
    else:
        keep = simplify(points, tolerance_m)
    return [positions[i] for i in keep]


# Delivery tracking ---------------------------------------------------------------------------


async def load_route(session: AsyncSession, org: uuid.UUID, route_id: str | None) -> RouteState | None:
    if route_id is None:
        return None
    row = await RouteRepository(session, org).owned(route_id)
    if row is None or not row.state:
        return None
    try:
        return from_jsonable(RouteState, row.state)
    except Exception as exc:  # a projection from an older shape must not fail the read
        log.warning("route %s projection unreadable: %s", route_id, exc)
        return None


def stop_eta(
    state: DeliveryState, route: RouteState | None, now: datetime
) -> tuple[datetime | None, EtaSource | None, StopStatus | None]:
    """The drop-off's ETA, where it came from, and the stop's status on its route.

    The route projection is re-estimated with `estimate_etas`, the function RouteWorkflow applies,
    so an ETA stored a while ago never lies in the past while the stop is still ahead.
    """
    stop = route.stop(state.delivery_id, "delivery") if route is not None else None
    if route is None or stop is None:
        if state.terminal or state.eta is None:
            return None, None, None
        return max(state.eta, now), EtaSource.DELIVERY, None
    if state.terminal or stop.status in FINISHED:
        return None, None, stop.status
    if stop.status is StopStatus.ARRIVED:
        return stop.eta, EtaSource.ARRIVED, stop.status
    fresh = estimate_etas(route, now).stop(state.delivery_id, "delivery")
    eta = fresh.eta if fresh is not None else stop.eta
    live = route.tracked_stop == stop.key and route.tracked_eta is not None
    return eta, EtaSource.LIVE if live else EtaSource.PLANNED, stop.status


async def delivery_tracking(
    session: AsyncSession, cache: CacheBus, row: DeliveryRow, now: datetime
) -> DeliveryTrackingOut:
    state = from_jsonable(DeliveryState, row.state)
    route = await load_route(session, row.organization_id, state.route_id)
    eta, source, stop_status = stop_eta(state, route, now)
    vehicle = uuid.UUID(state.vehicle_id) if state.vehicle_id else None
    position = (
        await latest_position(cache, row.organization_id, vehicle, now) if vehicle is not None else None
    )
    windows = state.spec.dropoff.windows
    return DeliveryTrackingOut(
        delivery_id=row.id,
        status=state.status,
        vehicle_id=vehicle,
        driver_id=uuid.UUID(state.driver_id) if state.driver_id else None,
        route_id=state.route_id,
        stop_status=stop_status,
        eta=eta,
        eta_source=source,
        window_start=windows[0].start if windows else None,
        window_end=windows[-1].end if windows else None,
        late=state.late,
        late_predicted=state.late_predicted,
        position=position,
        updated_at=state.updated_at,
    )
