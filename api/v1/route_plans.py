"""Route plans: optimise a depot's deliveries for a date (RoutePlanWorkflow), read, apply."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from sqlalchemy import Table, select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import CurrentUser, ResourcesDep, SessionDep, TemporalDep, require_roles
from api.errors import ProblemError, not_found
from api.http.pagination import Page, PageDep, make_page
from api.schemas.routing import RoutePlanCreate, RoutePlanOut, plan_out
from api.v1 import PREFIX
from api.services.crud import require_reference, require_references
from db.models import RoutePlanRow
from db.repositories.deliveries import DeliveryRepository
from db.repositories.fleet import DepotRepository, VehicleRepository
from db.upsert import insert_ignoring
from domain.ids import uuid7
from domain.roles import ALL_ROLES, FLEET_WRITERS
from domain.route_plans import ApplyPlanRequest, PlanRequest, PlanState, PlanStatus
from plumbing.codec import from_jsonable, to_jsonable
from workflows.route_plan import RoutePlanWorkflow, plan_workflow_id

router = APIRouter(prefix=f"{PREFIX}/route-plans", tags=["routing"])
Reader = Annotated[CurrentUser, Depends(require_roles(*ALL_ROLES))]
Writer = Annotated[CurrentUser, Depends(require_roles(*FLEET_WRITERS))]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


def _plan_id(org: uuid.UUID, key: str | None) -> uuid.UUID:
    # The same key names the same plan, so a retried POST finds the workflow it started.
    return uuid.uuid5(org, f"route-plan:{key}") if key else uuid7()


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
    org = user.organization_id
    await require_reference(DepotRepository(session, org), body.depot_id, "depot_id")
    await require_references(DeliveryRepository(session, org), body.delivery_ids, "delivery_ids")
    await require_references(VehicleRepository(session, org), body.vehicle_ids, "vehicle_ids")
    plan_id = _plan_id(user.organization_id, idempotency_key)
    req = PlanRequest(
        organization_id=str(user.organization_id),
        plan_id=str(plan_id),
        depot_id=str(body.depot_id),
        service_date=body.date.isoformat() if body.date else None,
        requested_by=f"{user.role.value}:{user.id}",
        delivery_ids=[str(d) for d in body.delivery_ids] if body.delivery_ids is not None else None,
        vehicle_ids=[str(v) for v in body.vehicle_ids] if body.vehicle_ids is not None else None,
        time_limit_s=body.time_limit_seconds,
        auto_apply=body.auto_apply,
        routing_task_queue=resources.settings.temporal_routing_task_queue,
    )
    state = PlanState(
        plan_id=req.plan_id, status=PlanStatus.OPTIMIZING, request=req, updated_at=datetime.now(UTC)
    )
    table = RoutePlanRow.__table__
    assert isinstance(table, Table)
    await session.execute(
        insert_ignoring(session.get_bind().dialect.name, table, ["id"]).values(
            id=plan_id,
            organization_id=user.organization_id,
            depot_id=body.depot_id,
            service_date=body.date,
            status=state.status.value,
            requested_by=req.requested_by,
            request=to_jsonable(req),
            state=to_jsonable(state),
            created_at=state.updated_at,
            updated_at=state.updated_at,
        )
    )
    await session.commit()
    await client.start_workflow(
        RoutePlanWorkflow.run,
        req,
        id=plan_workflow_id(req.plan_id),
        task_queue=resources.settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )
    response.headers["Location"] = f"/api/v1/route-plans/{plan_id}"
    return plan_out(await _row_state(session, user.organization_id, plan_id))


@router.get("", response_model=Page[RoutePlanOut])
async def list_route_plans(
    user: Reader,
    session: SessionDep,
    page: PageDep,
    depot_id: Annotated[uuid.UUID | None, Query()] = None,
    status: Annotated[PlanStatus | None, Query()] = None,
) -> Page[RoutePlanOut]:
    q = select(RoutePlanRow).where(RoutePlanRow.organization_id == user.organization_id)
    if depot_id is not None:
        q = q.where(RoutePlanRow.depot_id == depot_id)
    if status is not None:
        q = q.where(RoutePlanRow.status == status.value)
    if page.after is not None:
        q = q.where(RoutePlanRow.id < page.after)
    rows = list((await session.scalars(q.order_by(RoutePlanRow.id.desc()).limit(page.limit + 1))).all())
    return make_page(rows, page, lambda r: plan_out(from_jsonable(PlanState, r.state)))


@router.get("/{plan_id}", response_model=RoutePlanOut)
async def get_route_plan(
    plan_id: uuid.UUID,
    user: Reader,
    session: SessionDep,
    resources: ResourcesDep,
    consistent: bool = Query(default=False, description="Ask the workflow instead of the stored copy"),
) -> RoutePlanOut:
    state = await _row_state(session, user.organization_id, plan_id)
    if consistent:
        client = await resources.temporal.get()
        handle = client.get_workflow_handle_for(RoutePlanWorkflow.run, plan_workflow_id(str(plan_id)))
        state = await handle.query(RoutePlanWorkflow.state)
    return plan_out(state)


@router.post("/{plan_id}/apply", response_model=RoutePlanOut)
async def apply_route_plan(
    plan_id: uuid.UUID, user: Writer, session: SessionDep, client: TemporalDep
) -> RoutePlanOut:
    """Apply a plan created with `auto_apply=false`: answers once every delivery is assigned."""
    stored = await _row_state(session, user.organization_id, plan_id)
    handle = client.get_workflow_handle_for(RoutePlanWorkflow.run, plan_workflow_id(str(plan_id)))
    try:
        state = await handle.execute_update(
            RoutePlanWorkflow.apply, ApplyPlanRequest(actor=f"{user.role.value}:{user.id}")
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == "PlanNotApplicable":
            raise ProblemError(409, "plan_not_applicable", cause.message) from None
        raise
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:  # the workflow has finished: applied, discarded or failed
            raise ProblemError(
                409, "plan_not_applicable", f"the plan is {stored.status.value}; it can no longer be applied"
            ) from None
        raise
    return plan_out(state)


async def _row_state(session: SessionDep, org: uuid.UUID, plan_id: uuid.UUID) -> PlanState:
    row = await session.get(RoutePlanRow, plan_id)
    if row is None or row.organization_id != org:
        raise not_found("route_plan", plan_id)
    return from_jsonable(PlanState, row.state)
