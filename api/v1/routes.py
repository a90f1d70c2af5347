"""Vehicle routes (RouteWorkflow projections): list by date and vehicle, read, the driver's own
current route, and a dispatcher's re-sequencing of the planned stops."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import CurrentUser, ResourcesDep, SessionDep, TemporalDep, require_roles
from api.errors import ProblemError, not_found
from api.schemas.routing import ResequenceIn, RouteOut, route_out
from api.v1 import PREFIX
from db.models import RouteRow
from db.repositories.fleet import DriverRepository
from domain.roles import ALL_ROLES, FLEET_WRITERS, Role
from domain.routes import ResequenceRequest, RouteState, StopStatus, route_travel_s
from plumbing.codec import from_jsonable
from workflows.route import RouteWorkflow

router = APIRouter(prefix=f"{PREFIX}/routes", tags=["routing"])
Reader = Annotated[CurrentUser, Depends(require_roles(*ALL_ROLES))]
Writer = Annotated[CurrentUser, Depends(require_roles(*FLEET_WRITERS))]
DriverOnly = Annotated[CurrentUser, Depends(require_roles(Role.DRIVER))]
MAX_ROUTES = 500
DETOUR, SPEED_KMH = 1.3, 40.0


@router.get("", response_model=list[RouteOut])
async def list_routes(
    user: Reader,
    session: SessionDep,
    date_: Annotated[date | None, Query(alias="date", description="Service date")] = None,
    vehicle: Annotated[uuid.UUID | None, Query(description="Vehicle id")] = None,
    depot: Annotated[uuid.UUID | None, Query(description="Depot id")] = None,
) -> list[RouteOut]:
    q = select(RouteRow).where(RouteRow.organization_id == user.organization_id)
    if date_ is not None:
        q = q.where(RouteRow.shift == date_.isoformat())
    if vehicle is not None:
        q = q.where(RouteRow.vehicle_id == vehicle)
    if depot is not None:
        q = q.where(RouteRow.depot_id == depot)
    if user.role is Role.DRIVER:
        driver = await DriverRepository(session, user.organization_id).by_user(user.id)
        q = q.where(RouteRow.driver_id == (driver.id if driver else None))
    rows = (await session.scalars(q.order_by(RouteRow.shift.desc(), RouteRow.id).limit(MAX_ROUTES))).all()
    return [route_out(from_jsonable(RouteState, r.state)) for r in rows]


@router.get("/current", response_model=RouteOut)
async def current_route(user: DriverOnly, session: SessionDep) -> RouteOut:
    """The calling driver's route: the latest one not completed, else the latest."""
    driver = await DriverRepository(session, user.organization_id).by_user(user.id)
    if driver is None:
        raise not_found("route", "for this driver")
    rows = (
        await session.scalars(
            select(RouteRow)
            .where(RouteRow.organization_id == user.organization_id, RouteRow.driver_id == driver.id)
            .order_by(RouteRow.shift.desc(), RouteRow.updated_at.desc())
            .limit(20)
        )
    ).all()
    if not rows:
        raise not_found("route", "for this driver")
    row = next((r for r in rows if r.status != "completed"), rows[0])
    return route_out(from_jsonable(RouteState, row.state))


@router.get("/{route_id}", response_model=RouteOut)
async def get_route(
    route_id: str,
    user: Reader,
    session: SessionDep,
    resources: ResourcesDep,
    consistent: bool = Query(default=False, description="Ask the workflow instead of the stored copy"),
) -> RouteOut:
    state = await _row_state(session, user, route_id)
    if consistent:
        client = await resources.temporal.get()
        state = await client.get_workflow_handle_for(RouteWorkflow.run, route_id).query(RouteWorkflow.state)
    return route_out(state)


@router.post("/{route_id}/sequence", response_model=RouteOut)
async def resequence_route(
    route_id: str, body: ResequenceIn, user: Writer, session: SessionDep, client: TemporalDep
) -> RouteOut:
    """Put the planned stops in a new order; started and finished stops keep their place."""
    state = await _row_state(session, user, route_id)
    by_key = {s.key: s for s in state.stops}
    unknown = [k for k in body.order if k not in by_key]
    if unknown:
        raise ProblemError(422, "invalid_sequence", f"unknown stop keys: {', '.join(unknown[:10])}")
    fixed = [s for s in state.stops if s.status is not StopStatus.PLANNED]
    travel, end_travel = route_travel_s(state, fixed, [by_key[k] for k in body.order], DETOUR, SPEED_KMH)
    handle = client.get_workflow_handle_for(RouteWorkflow.run, route_id)
    try:
        new = await handle.execute_update(
            RouteWorkflow.resequence,
            ResequenceRequest(
                actor=f"{user.role.value}:{user.id}",
                order=body.order,
                travel_s=travel,
                end_travel_s=end_travel,
            ),
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type in ("InvalidSequence", "RouteCompleted"):
            code = "invalid_sequence" if cause.type == "InvalidSequence" else "route_completed"
            raise ProblemError(409 if code == "route_completed" else 422, code, cause.message) from None
        raise
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:  # the route's workflow has finished
            raise ProblemError(409, "route_completed", "the route is completed") from None
        raise
    return route_out(new)


async def _row_state(session: SessionDep, user: CurrentUser, route_id: str) -> RouteState:
    row = await session.get(RouteRow, route_id)
    if row is None or row.organization_id != user.organization_id:
        raise not_found("route", route_id)
    if user.role is Role.DRIVER:
        driver = await DriverRepository(session, user.organization_id).by_user(user.id)
        if driver is None or row.driver_id != driver.id:
            raise not_found("route", route_id)
    return from_jsonable(RouteState, row.state)
