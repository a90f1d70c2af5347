"""Side effects of route planning: load the problem from the database, store plans, apply them
through the delivery and route workflows, and project routes. Each is idempotent: plans and routes
only move forward, and applying skips deliveries already where the plan puts them."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.interfaces import implements
from activities.interfaces.routing import RoutePlanningInterface
from activities.resources import UpdateRejected
from activities.routing.problem import LOADED, MOVABLE, STARTED, ProblemBuilder, loaded_problem
from db.repositories.route_plans import save_plan, write_route
from db.repositories.routing import (
    deliveries_to_plan,
    drivers_of_vehicles,
    organization_depot,
    planning_vehicles,
)
from domain import channels
from domain.delivery import Actor, AssignRequest, DeliveryStatus
from domain.route_plans import (
    ApplyInput,
    ApplyResult,
    LoadedProblem,
    PlanRequest,
    PlanState,
    StopRef,
    VehicleRef,
)
from domain.routes import PlanChange, RouteInput, RouteState, RouteStop, route_workflow_id
from domain.routing import PlannedRoute, StopKind

if TYPE_CHECKING:
    from activities.resources import ActivityResources as Resources
    from activities.resources import WorkflowCalls


S = DeliveryStatus


class RoutePlanningActivities(RoutePlanningInterface):
    def __init__(self, resources: Resources, workflows: WorkflowCalls) -> None:
        self._r = resources
        self._workflows = workflows

    # Loading ------------------------------------------------------------------------------

    @implements(RoutePlanningInterface.load_routing_problem)
    async def load_routing_problem(self, req: PlanRequest) -> LoadedProblem:
        org = uuid.UUID(req.organization_id)
        statuses = [S.PENDING.value]
        if req.include_assigned:
            statuses += [s.value for s in MOVABLE | LOADED | STARTED]
        async with self._r.sessionmaker() as session:
            depot = await organization_depot(session, org, uuid.UUID(req.depot_id))
            if depot is None:
                raise ApplicationError("the depot does not exist", type="InvalidProblem", non_retryable=True)
            now = datetime.now(UTC)
            service_date = (
                date.fromisoformat(req.service_date)
                if req.service_date
                else now.astimezone(ZoneInfo(depot.timezone or "UTC")).date()
            )
            vehicles = await planning_vehicles(session, org, depot.id, _uuids(req.vehicle_ids))
            drivers = await drivers_of_vehicles(session, org, [v.id for v in vehicles])
            rows = await deliveries_to_plan(session, org, statuses, _uuids(req.delivery_ids))
        builder = ProblemBuilder(depot, service_date, now)
        return loaded_problem(builder, req.depot_id, vehicles, drivers, rows)

    # Plans --------------------------------------------------------------------------------

    @implements(RoutePlanningInterface.save_route_plan)
    async def save_route_plan(self, state: PlanState) -> None:
        async with self._r.sessionmaker() as session, session.begin():
            await save_plan(session, state)

    @implements(RoutePlanningInterface.apply_route_plan)
    async def apply_route_plan(self, inp: ApplyInput) -> ApplyResult:
        req, loaded, plan = inp.request, inp.loaded, inp.plan
        refs = {s.delivery_id: s for s in loaded.stops}
        vehicles = {v.vehicle_id: v for v in loaded.vehicles}
        actor = Actor(user_id=f"route-plan:{req.plan_id}", role="dispatcher")
        outcomes: dict[str, str] = {}
        routes: list[str] = []
        changed: list[str] = []
        for route in plan.routes:
            vehicle = vehicles[route.vehicle_id]
            route_id = route_workflow_id(route.vehicle_id, loaded.shift)
            assign = AssignRequest(actor, route.vehicle_id, vehicle.driver_id, route_id)
            for job_id in dict.fromkeys(s.job_id for s in route.stops if s.job_id):
                activity.heartbeat(job_id)
                outcomes[job_id] = await self._assign(job_id, assign)
                if outcomes[job_id] == "assigned" and route.vehicle_id not in changed:
                    changed.append(route.vehicle_id)
            change = plan_change(req.plan_id, loaded.origin, route, refs, vehicle.driver_id)
            start = route_input(inp, route, vehicle, change)
            await self._workflows.set_route_plan(start, change, activity.info().task_queue)
            routes.append(route_id)
        for job in plan.unassigned:
            outcomes.setdefault(job.job_id, f"unassigned: {job.reason.value}")
        return ApplyResult(outcomes=outcomes, routes=routes, changed_vehicles=changed)

    async def _assign(self, delivery_id: str, req: AssignRequest) -> str:
        """Assign the delivery to its planned vehicle and route unless it is there or under way."""
        st = await self._workflows.delivery_state(delivery_id)
        if st.vehicle_id == req.vehicle_id and st.route_id == req.route_id:
            return "unchanged"
        if st.status not in (S.PENDING, S.ASSIGNED):
            return f"skipped: it is {st.status.value}"
        try:
            await self._workflows.assign_delivery(delivery_id, req)
        except UpdateRejected as exc:
            return f"skipped: {exc}"
        return "assigned"

    # Routes -------------------------------------------------------------------------------

    @implements(RoutePlanningInterface.project_route)
    async def project_route(self, state: RouteState) -> None:
        async with self._r.sessionmaker() as session, session.begin():
            await write_route(session, state)
        message = route_message(state)
        for channel in (channels.org_routes(state.organization_id), channels.vehicle(state.vehicle_id)):
            await self._r.cache_bus.publish(channel, message)


def _uuids(ids: list[str] | None) -> list[uuid.UUID] | None:
    return None if ids is None else [uuid.UUID(i) for i in ids]


def route_input(inp: ApplyInput, route: PlannedRoute, vehicle: VehicleRef, change: PlanChange) -> RouteInput:
    """The start input of the vehicle shift's RouteWorkflow, if it is not running yet (its stops
    come with the plan, as its first Update)."""
    req, loaded = inp.request, inp.loaded
    depot = loaded.problem.locations[0]
    return RouteInput(
        route_id=route_workflow_id(route.vehicle_id, loaded.shift),
        organization_id=req.organization_id,
        vehicle_id=route.vehicle_id,
        shift=loaded.shift,
        driver_id=vehicle.driver_id,
        depot_id=req.depot_id,
        start_at=change.start_at or loaded.origin,
        plan_id=req.plan_id,
        stops=[],
        start_lat=depot.lat,
        start_lon=depot.lon,
    )


def plan_change(
    plan_id: str, origin: datetime, route: PlannedRoute, refs: dict[str, StopRef], driver_id: str | None
) -> PlanChange:
    """The plan's stops for one vehicle as RouteStops with travel times and planned arrivals."""
    stops: list[RouteStop] = []
    start_at: datetime | None = None
    last_departure = 0
    end_travel = 0
    for p in route.stops:
        if p.kind is StopKind.START:
            start_at = origin + timedelta(seconds=p.departure_s)
            last_departure = p.departure_s
            continue
        if p.kind is StopKind.END:
            end_travel = max(0, p.arrival_s - last_departure)
            continue
        if p.kind is StopKind.BREAK or p.job_id is None:
            last_departure = p.departure_s
            continue
        ref = refs[p.job_id]
        pickup = p.kind is StopKind.PICKUP
        stops.append(
            RouteStop(
                delivery_id=p.job_id,
                kind="pickup" if pickup else "delivery",
                lat=ref.pickup_lat if pickup and ref.pickup_lat is not None else ref.lat,
                lon=ref.pickup_lon if pickup and ref.pickup_lon is not None else ref.lon,
                address=(ref.pickup_address or "") if pickup else ref.address,
                service_s=max(0, p.departure_s - p.service_start_s),
                travel_s=max(0, p.arrival_s - last_departure),
                window_start=ref.pickup_window_start if pickup else ref.window_start,
                window_end=ref.pickup_window_end if pickup else ref.window_end,
                planned_arrival=origin + timedelta(seconds=p.arrival_s),
                eta=origin + timedelta(seconds=p.arrival_s),
            )
        )
        last_departure = p.departure_s
    return PlanChange(
        plan_id=plan_id, stops=stops, driver_id=driver_id, start_at=start_at, end_travel_s=end_travel
    )


def route_message(state: RouteState) -> dict[str, Any]:
    nxt = state.next_stop
    return {
        "type": "route.changed",
        "route_id": state.route_id,
        "vehicle_id": state.vehicle_id,
        "version": state.version,
        "status": state.status.value,
        "stops": len(state.stops),
        "next_delivery_id": nxt.delivery_id if nxt else None,
        "next_eta": nxt.eta.isoformat() if nxt and nxt.eta else None,
    }
