"""Route plans: start optimising a depot's deliveries (RoutePlanWorkflow), read the stored plans,
and apply one that waits for it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import CurrentUser
from api.errors import ProblemError, not_found
from api.http.pagination import Page, PageParams, make_page
from api.schemas.routing import RoutePlanCreate, RoutePlanOut, plan_out
from api.services.crud import require_reference, require_references
from db.repositories.deliveries import DeliveryRepository
from db.repositories.fleet import DepotRepository, VehicleRepository
from db.repositories.route_plan_rows import RoutePlanRowRepository
from domain.ids import uuid7
from domain.route_plans import ApplyPlanRequest, PlanRequest, PlanState, PlanStatus
from domain.workflow_names import plan_workflow_id
from plumbing.codec import from_jsonable, to_jsonable
from plumbing.settings import Settings
from workflows.route_plan import RoutePlanWorkflow


def _plan_id(org: uuid.UUID, key: str | None) -> uuid.UUID:
    # The same key names the same plan, so a retried POST finds the workflow it started.
    return uuid.uuid5(org, f"route-plan:{key}") if key else uuid7()


async def _check_references(session: AsyncSession, org: uuid.UUID, body: RoutePlanCreate) -> None:
    await require_reference(DepotRepository(session, org), body.depot_id, "depot_id")
    await require_references(DeliveryRepository(session, org), body.delivery_ids, "delivery_ids")
    await require_references(VehicleRepository(session, org), body.vehicle_ids, "vehicle_ids")


def _request(user: CurrentUser, plan_id: uuid.UUID, body: RoutePlanCreate, settings: Settings) -> PlanRequest:
    return PlanRequest(
        organization_id=str(user.organization_id),
        plan_id=str(plan_id),
        depot_id=str(body.depot_id),
        service_date=body.date.isoformat() if body.date else None,
        requested_by=f"{user.role.value}:{user.id}",
        delivery_ids=[str(d) for d in body.delivery_ids] if body.delivery_ids is not None else None,
        vehicle_ids=[str(v) for v in body.vehicle_ids] if body.vehicle_ids is not None else None,
        time_limit_s=body.time_limit_seconds,
        auto_apply=body.auto_apply,
        routing_task_queue=settings.temporal_routing_task_queue,
    )


async def create_plan(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    user: CurrentUser,
    body: RoutePlanCreate,
    idempotency_key: str | None,
) -> RoutePlanOut:
    """Store the requested plan and start its workflow; the answer is the plan as stored then."""
    org = user.organization_id
    await _check_references(session, org, body)
    plan_id = _plan_id(org, idempotency_key)
    req = _request(user, plan_id, body, settings)
    state = PlanState(
        plan_id=req.plan_id, status=PlanStatus.OPTIMIZING, request=req, updated_at=datetime.now(UTC)
    )
    await RoutePlanRowRepository(session, org).add_requested(
        plan_id,
        depot_id=body.depot_id,
        service_date=body.date,
        status=state.status.value,
        requested_by=req.requested_by,
        request=to_jsonable(req),
        state=to_jsonable(state),
        created_at=state.updated_at,
        updated_at=state.updated_at,
    )
    await session.commit()
    await client.start_workflow(
        RoutePlanWorkflow.run,
        req,
        id=plan_workflow_id(req.plan_id),
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )
    return plan_out(await plan_state(session, org, plan_id))


async def list_plans(
    session: AsyncSession,
    org: uuid.UUID,
    page: PageParams,
    depot_id: uuid.UUID | None,
    status: PlanStatus | None,
) -> Page[RoutePlanOut]:
    """The organization's plans, newest first (the cursor is the last, oldest, plan seen)."""
    rows = await RoutePlanRowRepository(session, org).newest_first(
        depot_id=depot_id,
        status=status.value if status is not None else None,
        before=page.after,
        limit=page.limit + 1,
    )
    return make_page(rows, page, lambda r: plan_out(from_jsonable(PlanState, r.state)))


async def plan_state(session: AsyncSession, org: uuid.UUID, plan_id: uuid.UUID) -> PlanState:
    row = await RoutePlanRowRepository(session, org).owned(plan_id)
    if row is None:
        raise not_found("route_plan", plan_id)
    return from_jsonable(PlanState, row.state)


async def query_plan(client: Client, plan_id: uuid.UUID) -> PlanState:
    handle = client.get_workflow_handle_for(RoutePlanWorkflow.run, plan_workflow_id(str(plan_id)))
    return await handle.query(RoutePlanWorkflow.state)


async def apply_plan(
    session: AsyncSession, client: Client, user: CurrentUser, plan_id: uuid.UUID
) -> RoutePlanOut:
    """Apply a plan created with `auto_apply=false`: answers once every delivery is assigned."""
    stored = await plan_state(session, user.organization_id, plan_id)
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
