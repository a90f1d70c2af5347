"""Side effects of route planning: load the problem from the database, store plans, apply them
through the delivery and route workflows, and project routes. Each is idempotent: plans and routes
only move forward, and applying skips deliveries already where the plan puts them."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, and_, or_, select, update
from temporalio import activity
from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from activities.interfaces import implements
from activities.interfaces.routing import RoutePlanningInterface
from activities.routing.problem import LOADED, MOVABLE, STARTED, ProblemBuilder, depot_of, window_overlaps_day
from db.models import DeliveryRow, Depot, Driver, RoutePlanRow, RouteRow, Vehicle
from db.upsert import insert_ignoring
from domain import channels
from domain.delivery import Actor, AssignRequest, DeliveryState, DeliveryStatus
from domain.route_plans import ApplyInput, ApplyResult, LoadedProblem, PlanRequest, PlanState, StopRef
from domain.routes import PlanChange, RouteInput, RouteState, RouteStop, route_workflow_id
from domain.routing import PlannedRoute, StopKind
from plumbing.codec import from_jsonable, to_jsonable

if TYPE_CHECKING:
    from activities.resources import ActivityResources as Resources

S = DeliveryStatus


class RoutePlanningActivities(RoutePlanningInterface):
    def __init__(self, resources: Resources) -> None:
        self._r = resources

    # Loading ------------------------------------------------------------------------------

    @implements(RoutePlanningInterface.load_routing_problem)
    async def load_routing_problem(self, req: PlanRequest) -> LoadedProblem:
        org = uuid.UUID(req.organization_id)
        async with self._r.sessionmaker() as session:
            depot = await session.get(Depot, uuid.UUID(req.depot_id))
            if depot is None or depot.organization_id != org:
                raise ApplicationError("the depot does not exist", type="InvalidProblem", non_retryable=True)
            now = datetime.now(UTC)
            service_date = (
                date.fromisoformat(req.service_date)
                if req.service_date
                else now.astimezone(ZoneInfo(depot.timezone or "UTC")).date()
            )
            b = ProblemBuilder(depot, service_date, now)

            q = select(Vehicle).where(Vehicle.organization_id == org, Vehicle.active.is_(True))
            if req.vehicle_ids is not None:
                q = q.where(Vehicle.id.in_([uuid.UUID(v) for v in req.vehicle_ids]))
            else:
                q = q.where(Vehicle.home_depot_id == depot.id)
            vehicles = list((await session.scalars(q.order_by(Vehicle.name))).all())
            drivers = {
                d.vehicle_id: d
                for d in (
                    await session.scalars(
                        select(Driver).where(
                            Driver.organization_id == org,
                            Driver.active.is_(True),
                            Driver.vehicle_id.in_([v.id for v in vehicles]),
                        )
                    )
                ).all()
            }
            vehicle_ids = {str(v.id) for v in vehicles}

            statuses = [S.PENDING.value]
            if req.include_assigned:
                statuses += [s.value for s in MOVABLE | LOADED | STARTED]
            dq = select(DeliveryRow).where(
                DeliveryRow.organization_id == org, DeliveryRow.status.in_(statuses)
            )
            if req.delivery_ids is not None:
                dq = select(DeliveryRow).where(
                    DeliveryRow.organization_id == org,
                    DeliveryRow.id.in_([uuid.UUID(d) for d in req.delivery_ids]),
                )
            rows = list((await session.scalars(dq.order_by(DeliveryRow.id))).all())

        started: dict[str, list[str]] = {v: [] for v in vehicle_ids}
        loaded: dict[str, list[str]] = {v: [] for v in vehicle_ids}
        chosen: list[tuple[DeliveryState, str | None]] = []
        for row in rows:
            st = from_jsonable(DeliveryState, row.state)
            did = st.delivery_id
            if depot_of(row.state) not in (None, req.depot_id):
                b.skipped[did] = "it belongs to another depot"
            elif st.status not in {S.PENDING, *MOVABLE, *LOADED, *STARTED}:
                b.skipped[did] = f"it is {st.status.value}"
            elif not window_overlaps_day(st, b.origin, b.day_end):
                b.skipped[did] = f"its windows are not on {service_date.isoformat()}"
            elif st.status in LOADED | STARTED:
                if st.vehicle_id not in vehicle_ids:
                    b.skipped[did] = "it is under way on a vehicle outside this plan"
                    continue
                # Under way: it stays on its vehicle, and a stop already started stays first.
                (started if st.status in STARTED else loaded)[st.vehicle_id].append(did)
                chosen.append((st, st.vehicle_id))
            elif st.status in MOVABLE and st.vehicle_id not in vehicle_ids:
                b.skipped[did] = "it is assigned to a vehicle outside this plan"
            else:
                chosen.append((st, None))
        for v in vehicles:
            b.add_vehicle(v, drivers.get(v.id), started[str(v.id)], loaded[str(v.id)])
        for st, locked in chosen:
            b.add_delivery(st, locked)
        return LoadedProblem(
            problem=b.problem(),
            origin=b.origin,
            shift=service_date.isoformat(),
            vehicles=b.vehicle_refs,
            stops=b.stops,
            skipped=b.skipped,
        )

    # Plans --------------------------------------------------------------------------------

    @implements(RoutePlanningInterface.save_route_plan)
    async def save_route_plan(self, state: PlanState) -> None:
        req = state.request
        values: dict[str, Any] = {
            "status": state.status.value,
            "state": to_jsonable(state),
            "error": state.error,
            "updated_at": state.updated_at or datetime.now(UTC),
        }
        plan_id = uuid.UUID(state.plan_id)
        async with self._r.sessionmaker() as session, session.begin():
            table = RoutePlanRow.__table__
            assert isinstance(table, Table)
            await session.execute(
                insert_ignoring(session.get_bind().dialect.name, table, ["id"]).values(
                    id=plan_id,
                    organization_id=uuid.UUID(req.organization_id),
                    depot_id=uuid.UUID(req.depot_id),
                    service_date=date.fromisoformat(req.service_date) if req.service_date else None,
                    requested_by=req.requested_by,
                    request=to_jsonable(req),
                    created_at=values["updated_at"],
                    **values,
                )
            )
            # A retried save of an older state must not overwrite a newer one.
            await session.execute(
                update(RoutePlanRow)
                .where(RoutePlanRow.id == plan_id, RoutePlanRow.updated_at <= values["updated_at"])
                .values(**values)
            )

    @implements(RoutePlanningInterface.apply_route_plan)
    async def apply_route_plan(self, inp: ApplyInput) -> ApplyResult:
        from workflows.delivery import DeliveryWorkflow, delivery_workflow_id
        from workflows.route import RouteWorkflow

        client = await self._r.temporal.get()
        req, loaded, plan = inp.request, inp.loaded, inp.plan
        refs = {s.delivery_id: s for s in loaded.stops}
        vehicles = {v.vehicle_id: v for v in loaded.vehicles}
        actor = Actor(user_id=f"route-plan:{req.plan_id}", role="dispatcher")
        depot = loaded.problem.locations[0]
        outcomes: dict[str, str] = {}
        routes: list[str] = []
        changed: list[str] = []
        for route in plan.routes:
            vehicle = vehicles[route.vehicle_id]
            route_id = route_workflow_id(route.vehicle_id, loaded.shift)
            for job_id in dict.fromkeys(s.job_id for s in route.stops if s.job_id):
                activity.heartbeat(job_id)
                handle = client.get_workflow_handle_for(DeliveryWorkflow.run, delivery_workflow_id(job_id))
                st = await handle.query(DeliveryWorkflow.state)
                if st.vehicle_id == route.vehicle_id and st.route_id == route_id:
                    outcomes[job_id] = "unchanged"
                    continue
                if st.status not in (S.PENDING, S.ASSIGNED):
                    outcomes[job_id] = f"skipped: it is {st.status.value}"
                    continue
                try:
                    await handle.execute_update(
                        DeliveryWorkflow.assign,
                        AssignRequest(
                            actor=actor,
                            vehicle_id=route.vehicle_id,
                            driver_id=vehicle.driver_id,
                            route_id=route_id,
                        ),
                    )
                except WorkflowUpdateFailedError as exc:
                    outcomes[job_id] = f"skipped: {exc.cause}"
                    continue
                outcomes[job_id] = "assigned"
                if route.vehicle_id not in changed:
                    changed.append(route.vehicle_id)
            change = plan_change(req.plan_id, loaded.origin, route, refs, vehicle.driver_id)
            start = WithStartWorkflowOperation(
                RouteWorkflow.run,
                RouteInput(
                    route_id=route_id,
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
                ),
                id=route_id,
                task_queue=activity.info().task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            await client.execute_update_with_start_workflow(
                RouteWorkflow.set_plan, change, start_workflow_operation=start
            )
            routes.append(route_id)
        for job in plan.unassigned:
            outcomes.setdefault(job.job_id, f"unassigned: {job.reason.value}")
        return ApplyResult(outcomes=outcomes, routes=routes, changed_vehicles=changed)

    # Routes -------------------------------------------------------------------------------

    @implements(RoutePlanningInterface.project_route)
    async def project_route(self, state: RouteState) -> None:
        values: dict[str, Any] = {
            "driver_id": uuid.UUID(state.driver_id) if state.driver_id else None,
            "plan_id": state.plan_id,
            "status": state.status.value,
            "version": state.version,
            "start_at": state.start_at,
            "estimated_end": state.estimated_end,
            "state": to_jsonable(state),
            "updated_at": state.updated_at or datetime.now(UTC),
        }
        async with self._r.sessionmaker() as session, session.begin():
            moved = await session.execute(
                update(RouteRow)
                .where(
                    RouteRow.id == state.route_id,
                    or_(
                        RouteRow.version < state.version,
                        # A plan applied after the vehicle's route of the day completed starts a new run
                        # of the same workflow id, whose versions begin at 1 again: it replaces the row.
                        and_(RouteRow.status == "completed", RouteRow.plan_id != state.plan_id),
                    ),
                )
                .values(**values)
            )
            if moved.rowcount == 0:  # type: ignore[attr-defined]
                table = RouteRow.__table__
                assert isinstance(table, Table)
                await session.execute(
                    insert_ignoring(session.get_bind().dialect.name, table, ["id"]).values(
                        id=state.route_id,
                        organization_id=uuid.UUID(state.organization_id),
                        vehicle_id=uuid.UUID(state.vehicle_id),
                        depot_id=uuid.UUID(state.depot_id) if state.depot_id else None,
                        shift=state.shift,
                        **values,
                    )
                )
        message = route_message(state)
        for channel in (channels.org_routes(state.organization_id), channels.vehicle(state.vehicle_id)):
            await self._r.cache_bus.publish(channel, message)


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
