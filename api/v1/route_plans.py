"""Route plans: optimise a depot's deliveries for a date (RoutePlanWorkflow), read, apply."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from api.deps import Reader, ResourcesDep, SessionDep, TemporalDep, Writer
from api.http.pagination import Page, PageDep
from api.schemas.routing import RoutePlanCreate, RoutePlanOut, plan_out
from api.services import route_plans as service
from api.v1 import PREFIX
from domain.route_plans import PlanStatus

router = APIRouter(prefix=f"{PREFIX}/route-plans", tags=["routing"])
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


@router.post("", status_code=202, response_model=RoutePlanOut)
async def create_route_plan(
    body: RoutePlanCreate,
    user: Writer,
    session: SessionDep,
    client: TemporalDep,
    resources: ResourcesDep,
    response: Response,
    idempotency_key: IdemKey = None,
) -> RoutePlanOut:
    """Start optimising. Answers 202 at once; poll the plan (or follow the routes) for the result."""
    plan = await service.create_plan(session, client, resources.settings, user, body, idempotency_key)
    response.headers["Location"] = f"/api/v1/route-plans/{plan.id}"
    return plan


@router.get("", response_model=Page[RoutePlanOut])
async def list_route_plans(
    user: Reader,
    session: SessionDep,
    page: PageDep,
    depot_id: Annotated[uuid.UUID | None, Query()] = None,
    status: Annotated[PlanStatus | None, Query()] = None,
) -> Page[RoutePlanOut]:
    return await service.list_plans(session, user.organization_id, page, depot_id, status)


@router.get("/{plan_id}", response_model=RoutePlanOut)
async def get_route_plan(
    plan_id: uuid.UUID,
    user: Reader,
    session: SessionDep,
    resources: ResourcesDep,
    consistent: bool = Query(default=False, description="Ask the workflow instead of the stored copy"),
) -> RoutePlanOut:
    state = await service.plan_state(session, user.organization_id, plan_id)
    if consistent:
        state = await service.query_plan(await resources.temporal.get(), plan_id)
    return plan_out(state)


@router.post("/{plan_id}/apply", response_model=RoutePlanOut)
async def apply_route_plan(
    plan_id: uuid.UUID, user: Writer, session: SessionDep, client: TemporalDep
) -> RoutePlanOut:
    """Apply a plan created with `auto_apply=false`: answers once every delivery is assigned."""
    return await service.apply_plan(session, client, user, plan_id)
