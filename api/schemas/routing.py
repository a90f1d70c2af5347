"""Route plans, routes and auto-dispatch on the wire."""

from __future__ import annotations

import datetime as dt
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from api.schemas.common import Coordinates, Input
from domain.route_plans import DispatchState, PlanState, PlanStatus
from domain.routes import RouteState, RouteStatus, StopStatus, route_workflow_id

IdList = Annotated[list[uuid.UUID], Field(max_length=5000)]
StopKey = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class RoutePlanCreate(Input):
    depot_id: uuid.UUID
    date: dt.date | None = Field(default=None, description="Service date (depot time zone); default today")
    delivery_ids: IdList | None = Field(default=None, description="Only these deliveries (default: all open)")
    vehicle_ids: IdList | None = Field(default=None, description="Only these vehicles (default: the depot's)")
    time_limit_seconds: float = Field(default=5.0, gt=0, le=300, description="Optimizer time limit")
    auto_apply: bool = Field(default=True, description="Apply as soon as it is planned")


class PlannedStopOut(BaseModel):
    kind: str
    delivery_id: uuid.UUID | None
    arrival: datetime
    departure: datetime
    load: list[int]
    distance_m: int


class PlannedRouteOut(BaseModel):
    vehicle_id: uuid.UUID
    route_id: str
    distance_m: int
    duration_s: int
    stops: list[PlannedStopOut]


class UnassignedOut(BaseModel):
    delivery_id: uuid.UUID
    reason: str
    detail: str


class PlanTotals(BaseModel):
    distance_m: int
    duration_s: int
    cost: float
    engine: str
    solve_time_s: float


class RoutePlanOut(BaseModel):
    id: uuid.UUID
    depot_id: uuid.UUID
    date: dt.date | None
    status: PlanStatus
    requested_by: str
    auto_apply: bool
    totals: PlanTotals | None = None
    routes: list[PlannedRouteOut] = Field(default_factory=list)
    unassigned: list[UnassignedOut] = Field(default_factory=list)
    skipped: list[UnassignedOut] = Field(default_factory=list, description="Deliveries not planned, and why")
    outcomes: dict[str, str] = Field(default_factory=dict, description="Per delivery: what applying did")
    error: str | None = None
    updated_at: datetime | None = None


def plan_out(st: PlanState) -> RoutePlanOut:
    req = st.request
    routes: list[PlannedRouteOut] = []
    totals = None
    unassigned: list[UnassignedOut] = []
    if st.plan is not None:
        p = st.plan
        totals = PlanTotals(
            distance_m=p.distance_m,
            duration_s=p.duration_s,
            cost=p.cost,
            engine=p.engine,
            solve_time_s=p.solve_time_s,
        )
        base = st.origin or datetime.fromtimestamp(0, UTC)
        for r in p.routes:
            routes.append(
                PlannedRouteOut(
                    vehicle_id=uuid.UUID(r.vehicle_id),
                    route_id=route_workflow_id(r.vehicle_id, st.shift or ""),
                    distance_m=r.distance_m,
                    duration_s=r.duration_s,
                    stops=[
                        PlannedStopOut(
                            kind=s.kind.value,
                            delivery_id=uuid.UUID(s.job_id) if s.job_id else None,
                            arrival=base + timedelta(seconds=s.arrival_s),
                            departure=base + timedelta(seconds=s.departure_s),
                            load=list(s.load),
                            distance_m=s.distance_m,
                        )
                        for s in r.stops
                    ],
                )
            )
        unassigned = [
            UnassignedOut(delivery_id=uuid.UUID(u.job_id), reason=u.reason.value, detail=u.detail)
            for u in p.unassigned
        ]
    return RoutePlanOut(
        id=uuid.UUID(st.plan_id),
        depot_id=uuid.UUID(req.depot_id),
        date=date.fromisoformat(day) if (day := st.shift or req.service_date) else None,
        status=st.status,
        requested_by=req.requested_by,
        auto_apply=req.auto_apply,
        totals=totals,
        routes=routes,
        unassigned=unassigned,
        skipped=[
            UnassignedOut(delivery_id=uuid.UUID(d), reason="not_planned", detail=why)
            for d, why in st.skipped.items()
        ],
        outcomes=st.result.outcomes if st.result else {},
        error=st.error,
        updated_at=st.updated_at,
    )


class RouteStopOut(BaseModel):
    key: str
    delivery_id: uuid.UUID
    kind: str
    location: Coordinates
    address: str
    status: StopStatus
    window_start: datetime | None
    window_end: datetime | None
    planned_arrival: datetime | None
    eta: datetime | None
    finished_at: datetime | None


class RouteOut(BaseModel):
    id: str
    vehicle_id: uuid.UUID
    driver_id: uuid.UUID | None
    depot_id: uuid.UUID | None
    shift: str
    plan_id: str
    status: RouteStatus
    version: int
    start_at: datetime
    estimated_end: datetime | None
    next_stop: str | None
    stops: list[RouteStopOut]
    updated_at: datetime | None


def route_out(st: RouteState) -> RouteOut:
    nxt = st.next_stop
    return RouteOut(
        id=st.route_id,
        vehicle_id=uuid.UUID(st.vehicle_id),
        driver_id=uuid.UUID(st.driver_id) if st.driver_id else None,
        depot_id=uuid.UUID(st.depot_id) if st.depot_id else None,
        shift=st.shift,
        plan_id=st.plan_id,
        status=st.status,
        version=st.version,
        start_at=st.start_at,
        estimated_end=st.estimated_end,
        next_stop=nxt.key if nxt else None,
        stops=[
            RouteStopOut(
                key=s.key,
                delivery_id=uuid.UUID(s.delivery_id),
                kind=s.kind,
                location=Coordinates(lat=s.lat, lon=s.lon),
                address=s.address,
                status=s.status,
                window_start=s.window_start,
                window_end=s.window_end,
                planned_arrival=s.planned_arrival,
                eta=s.eta,
                finished_at=s.finished_at,
            )
            for s in st.stops
        ],
        updated_at=st.updated_at,
    )


class ResequenceIn(Input):
    order: Annotated[list[StopKey], Field(min_length=1, max_length=2000)] = Field(
        description="Every planned stop's key (`{delivery_id}:{kind}`) in the new order"
    )


class DispatchConfig(Input):
    debounce_seconds: float = Field(default=30.0, ge=0, le=3600, description="Batch changes for this long")
    time_limit_seconds: float = Field(default=5.0, gt=0, le=300)


class DispatchOut(BaseModel):
    depot_id: uuid.UUID
    running: bool
    pending: list[uuid.UUID] = Field(default_factory=list)
    batches: int = 0
    last_plan_id: uuid.UUID | None = None
    last_status: str | None = None
    last_error: str | None = None


def dispatch_out(depot_id: uuid.UUID, st: DispatchState | None) -> DispatchOut:
    if st is None:
        return DispatchOut(depot_id=depot_id, running=False)
    return DispatchOut(
        depot_id=depot_id,
        running=not st.stopping,
        pending=[uuid.UUID(p) for p in st.pending],
        batches=st.batches,
        last_plan_id=uuid.UUID(st.last_plan_id) if st.last_plan_id else None,
        last_status=st.last_status,
        last_error=st.last_error,
    )
