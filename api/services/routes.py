"""Vehicle routes for the REST API: the stored projections (a driver sees only their own), the
workflow's state on request, and a dispatcher's re-sequencing of the planned stops."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import CurrentUser
from api.errors import ProblemError, not_found
from api.schemas.routing import RouteOut, route_out
from db.models import RouteRow
from db.repositories.fleet import DriverRepository
from db.repositories.routes import RouteRepository
from domain.roles import Role
from domain.routes import ResequenceRequest, RouteState, StopStatus, route_travel_s
from plumbing.codec import from_jsonable
from workflows.route import RouteWorkflow

MAX_ROUTES = 500
DETOUR, SPEED_KMH = 1.3, 40.0


def _out(row: RouteRow) -> RouteOut:
    return route_out(from_jsonable(RouteState, row.state))


async def list_routes(
    session: AsyncSession,
    user: CurrentUser,
    day: date | None,
    vehicle_id: uuid.UUID | None,
    depot_id: uuid.UUID | None,
) -> list[RouteOut]:
    drivers: list[uuid.UUID | None] = []
    if user.role is Role.DRIVER:
        driver = await DriverRepository(session, user.organization_id).by_user(user.id)
        drivers.append(driver.id if driver else None)
    rows = await RouteRepository(session, user.organization_id).search(
        shift=day.isoformat() if day is not None else None,
        vehicle_id=vehicle_id,
        depot_id=depot_id,
        driver_ids=drivers,
        limit=MAX_ROUTES,
    )
    return [_out(r) for r in rows]


async def current_route(session: AsyncSession, user: CurrentUser) -> RouteOut:
    """The calling driver's route: the latest one not completed, else the latest."""
    driver = await DriverRepository(session, user.organization_id).by_user(user.id)
    if driver is None:
        raise not_found("route", "for this driver")
    rows = await RouteRepository(session, user.organization_id).latest_of_driver(driver.id, limit=20)
    if not rows:
        raise not_found("route", "for this driver")
    return _out(next((r for r in rows if r.status != "completed"), rows[0]))


async def route_state(session: AsyncSession, user: CurrentUser, route_id: str) -> RouteState:
    """The stored state of a route the caller may see (a driver: only one they drive)."""
    row = await RouteRepository(session, user.organization_id).owned(route_id)
    if row is None:
        raise not_found("route", route_id)
    if user.role is Role.DRIVER:
        driver = await DriverRepository(session, user.organization_id).by_user(user.id)
        if driver is None or row.driver_id != driver.id:
            raise not_found("route", route_id)
    return from_jsonable(RouteState, row.state)


async def query_route(client: Client, route_id: str) -> RouteState:
    return await client.get_workflow_handle_for(RouteWorkflow.run, route_id).query(RouteWorkflow.state)


async def resequence(
    session: AsyncSession, client: Client, user: CurrentUser, route_id: str, order: list[str]
) -> RouteOut:
    """Put the planned stops in a new order; started and finished stops keep their place."""
    state = await route_state(session, user, route_id)
    by_key = {s.key: s for s in state.stops}
    unknown = [k for k in order if k not in by_key]
    if unknown:
        raise ProblemError(422, "invalid_sequence", f"unknown stop keys: {', '.join(unknown[:10])}")
    fixed = [s for s in state.stops if s.status is not StopStatus.PLANNED]
    travel, end_travel = route_travel_s(state, fixed, [by_key[k] for k in order], DETOUR, SPEED_KMH)
    handle = client.get_workflow_handle_for(RouteWorkflow.run, route_id)
    req = ResequenceRequest(
        actor=f"{user.role.value}:{user.id}", order=order, travel_s=travel, end_travel_s=end_travel
    )
    try:
        new = await handle.execute_update(RouteWorkflow.resequence, req)
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
