"""Vehicle routes (RouteWorkflow projections): list by date and vehicle, read, the driver's own
current route, and a dispatcher's re-sequencing of the planned stops."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import (
    DriverOnly,
    Reader,
    ResourcesDep,
    SessionDep,
    TemporalDep,
    Writer,
)
from api.schemas.routing import ResequenceIn, RouteOut, route_out
from api.services import routes as service
from api.v1 import PREFIX

router = APIRouter(prefix=f"{PREFIX}/routes", tags=["routing"])


@router.get("", response_model=list[RouteOut])
async def list_routes(
    user: Reader,
    session: SessionDep,
    date_: Annotated[date | None, Query(alias="date", description="Service date")] = None,
    vehicle: Annotated[uuid.UUID | None, Query(description="Vehicle id")] = None,
    depot: Annotated[uuid.UUID | None, Query(description="Depot id")] = None,
) -> list[RouteOut]:
    return await service.list_routes(session, user, date_, vehicle, depot)


@router.get("/current", response_model=RouteOut)
async def current_route(user: DriverOnly, session: SessionDep) -> RouteOut:
    """The calling driver's route: the latest one not completed, else the latest."""
    return await service.current_route(session, user)


@router.get("/{route_id}", response_model=RouteOut)
async def get_route(
    route_id: str,
    user: Reader,
    session: SessionDep,
    resources: ResourcesDep,
    consistent: bool = Query(default=False, description="Ask the workflow instead of the stored copy"),
) -> RouteOut:
    state = await service.route_state(session, user, route_id)
    if consistent:
        state = await service.query_route(await resources.temporal.get(), route_id)
    return route_out(state)


@router.post("/{route_id}/sequence", response_model=RouteOut)
async def resequence_route(
    route_id: str, body: ResequenceIn, user: Writer, session: SessionDep, client: TemporalDep
) -> RouteOut:
    """Put the planned stops in a new order; started and finished stops keep their place."""
    return await service.resequence(session, client, user, route_id, body.order)
