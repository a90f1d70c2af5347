"""Turning the database's deliveries and vehicles into a RoutingProblem (pure functions of the rows).

Units: demand and capacity dimensions are (weight in grams, volume in litres, units); times are
seconds from the start of the service date in the depot's time zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from db.models import DeliveryRow, Depot, Driver, Vehicle
from domain.delivery import DeliveryState, DeliveryStatus, TimeWindow
from domain.delivery import Stop as DeliveryStop
from domain.geo import LatLon
from domain.route_plans import LoadedProblem, StopRef, VehicleRef
from domain.routing import Job, Objective, RoutingProblem, Stop, Window
from domain.routing import Vehicle as RoutingVehicle
from plumbing.codec import from_jsonable

UNLIMITED = 10**9  # a capacity the vehicle record leaves open
DEFAULT_SHIFT = (time(8, 0), time(20, 0))
S = DeliveryStatus
# Assigned work a re-optimisation may move, and work already under way that stays on its vehicle.
MOVABLE = frozenset({S.ASSIGNED})
LOADED = frozenset({S.PICKED_UP, S.OUT_FOR_DELIVERY})
STARTED = frozenset({S.ARRIVED})


@dataclass
class ProblemBuilder:
    depot: Depot
    service_date: date
    now: datetime

    def __post_init__(self) -> None:
        self.tz = ZoneInfo(self.depot.timezone or "UTC")
        self.origin = datetime.combine(self.service_date, time(0), self.tz).astimezone(UTC)
        self.day_end = self.origin + timedelta(days=1)
        self.locations: list[LatLon] = [LatLon(self.depot.lat, self.depot.lon)]
        self.vehicles: list[RoutingVehicle] = []
        self.vehicle_refs: list[VehicleRef] = []
        self.jobs: list[Job] = []
        self.stops: list[StopRef] = []
        self.skipped: dict[str, str] = {}

    def seconds(self, at: datetime) -> int:
        return math.floor((at - self.origin).total_seconds())

    def _now_s(self) -> int:
        return max(0, self.seconds(self.now))

    def add_vehicle(self, v: Vehicle, driver: Driver | None, started: list[str], loaded: list[str]) -> None:
        start_t, end_t = v.shift_start or DEFAULT_SHIFT[0], v.shift_end or DEFAULT_SHIFT[1]
        start = self.seconds(datetime.combine(self.service_date, start_t, self.tz))
        end = self.seconds(datetime.combine(self.service_date, end_t, self.tz))
        if end <= start:  # an overnight shift ends the next day
            end += 24 * 3600
        start = max(start, self._now_s())
        skills = frozenset(v.skills or []) | frozenset(driver.skills if driver else [])
        self.vehicles.append(
            RoutingVehicle(
                id=str(v.id),
                start_location=0,
                end_location=0,
                capacity=(
                    _grams(v.capacity_weight_kg),
                    _litres(v.capacity_volume_m3),
                    _units(v.capacity_units),
                ),
                shift=Window(start, max(start, end)),
                skills=skills,
                profile=v.profile,
                started=tuple(started),
                loaded=tuple(loaded),
            )
        )
        self.vehicle_refs.append(
            VehicleRef(vehicle_id=str(v.id), driver_id=str(driver.id) if driver else None, name=v.name)
        )

    def add_delivery(self, st: DeliveryState, locked_vehicle: str | None) -> None:
        spec = st.spec
        drop_windows = self._windows(spec.dropoff.windows)
        if drop_windows is None:
            self.skipped[st.delivery_id] = "every drop-off window has closed"
            return
        pickup = None
        if spec.pickup is not None and st.status not in LOADED | STARTED:
            pickup_windows = self._windows(spec.pickup.windows)
            if pickup_windows is None:
                self.skipped[st.delivery_id] = "every pickup window has closed"
                return
            pickup = self._stop(spec.pickup, pickup_windows)
        drop = self._stop(spec.dropoff, drop_windows)
        size = spec.size
        self.jobs.append(
            Job(
                id=st.delivery_id,
                delivery=drop,
                pickup=pickup,
                demand=(_grams(size.weight_kg), _litres(size.volume_m3), max(0, size.units)),
                priority=max(0, min(100, spec.priority)),
                skills=frozenset(spec.required_skills),
                vehicle_id=locked_vehicle,
            )
        )
        first_drop = spec.dropoff.windows[0] if spec.dropoff.windows else None
        last_drop = spec.dropoff.windows[-1] if spec.dropoff.windows else None
        p = spec.pickup if pickup is not None else None
        self.stops.append(
            StopRef(
                delivery_id=st.delivery_id,
                address=spec.dropoff.address,
                lat=spec.dropoff.lat,
                lon=spec.dropoff.lon,
                window_start=first_drop.start if first_drop else None,
                window_end=last_drop.end if last_drop else None,
                pickup_address=p.address if p else None,
                pickup_lat=p.lat if p else None,
                pickup_lon=p.lon if p else None,
                pickup_window_start=p.windows[0].start if p and p.windows else None,
                pickup_window_end=p.windows[-1].end if p and p.windows else None,
            )
        )

    def _stop(self, stop: DeliveryStop, windows: tuple[Window, ...]) -> Stop:
        self.locations.append(LatLon(stop.lat, stop.lon))
        return Stop(
            location=len(self.locations) - 1,
            windows=windows,
            service_s=round(stop.service_minutes * 60),
        )

    def _windows(self, windows: list[TimeWindow]) -> tuple[Window, ...] | None:
        """Windows in problem seconds, those already closed left out; None if all have closed."""
        if not windows:
            return ()
        now = self._now_s()
        out = tuple(
            Window(max(now, self.seconds(w.start)), self.seconds(w.end))
            for w in windows
            if self.seconds(w.end) >= now
        )
        return out or None

    def problem(self) -> RoutingProblem:
        return RoutingProblem(
            locations=tuple(self.locations),
            vehicles=tuple(self.vehicles),
            jobs=tuple(self.jobs),
            origin=self.origin,
            objective=Objective.DISTANCE,
        )


def window_overlaps_day(st: DeliveryState, start: datetime, end: datetime) -> bool:
    windows = st.spec.dropoff.windows
    return not windows or any(w.start < end and w.end > start for w in windows)


def _grams(kg: float | None) -> int:
    return UNLIMITED if kg is None else max(0, round(kg * 1000))


def _litres(m3: float | None) -> int:
    return UNLIMITED if m3 is None else max(0, round(m3 * 1000))


def _units(units: int | None) -> int:
    return UNLIMITED if units is None else max(0, units)


def depot_of(state: dict[str, Any]) -> str | None:
    spec = state.get("spec") or {}
    depot = spec.get("depot_id")
    return str(depot) if depot else None


def loaded_problem(
    b: ProblemBuilder,
    depot_id: str,
    vehicles: list[Vehicle],
    drivers: dict[Any, Driver],
    rows: list[DeliveryRow],
) -> LoadedProblem:
    """The problem of the vehicles (with their drivers) and of those deliveries that belong in it;
    each one left out is in `skipped` with the reason."""
    vehicle_ids = {str(v.id) for v in vehicles}
    started: dict[str, list[str]] = {v: [] for v in vehicle_ids}
    loaded: dict[str, list[str]] = {v: [] for v in vehicle_ids}
    chosen: list[tuple[DeliveryState, str | None]] = []
    for row in rows:
        st = from_jsonable(DeliveryState, row.state)
        reason = _left_out(b, st, depot_of(row.state), depot_id, vehicle_ids)
        if reason is not None:
            b.skipped[st.delivery_id] = reason
        elif st.status in LOADED | STARTED:
            # Under way: it stays on its vehicle, and a stop already started stays first.
            assert st.vehicle_id is not None
            (started if st.status in STARTED else loaded)[st.vehicle_id].append(st.delivery_id)
            chosen.append((st, st.vehicle_id))
        else:
            chosen.append((st, None))
    for v in vehicles:
        b.add_vehicle(v, drivers.get(v.id), started[str(v.id)], loaded[str(v.id)])
    for st, locked in chosen:
        b.add_delivery(st, locked)
    return LoadedProblem(
        problem=b.problem(),
        origin=b.origin,
        shift=b.service_date.isoformat(),
        vehicles=b.vehicle_refs,
        stops=b.stops,
        skipped=b.skipped,
    )


def _left_out(
    b: ProblemBuilder, st: DeliveryState, depot: str | None, depot_id: str, vehicle_ids: set[str]
) -> str | None:
    """Why the delivery stays out of the problem, or None if it belongs in it."""
    if depot not in (None, depot_id):
        return "it belongs to another depot"
    if st.status not in {S.PENDING, *MOVABLE, *LOADED, *STARTED}:
        return f"it is {st.status.value}"
    if not window_overlaps_day(st, b.origin, b.day_end):
        return f"its windows are not on {b.service_date.isoformat()}"
    if st.status in LOADED | STARTED and st.vehicle_id not in vehicle_ids:
        return "it is under way on a vehicle outside this plan"
    if st.status in MOVABLE and st.vehicle_id not in vehicle_ids:
        return "it is assigned to a vehicle outside this plan"
    return None
