"""Auto-dispatch per depot: start, read and stop its DispatchWorkflow."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from api.deps import CurrentUser, ResourcesDep, SessionDep, TemporalDep, require_roles
from api.errors import not_found
from api.schemas.routing import DispatchConfig, DispatchOut, dispatch_out
from api.v1 import PREFIX
from db.repositories.fleet import DepotRepository
from domain.roles import ALL_ROLES, FLEET_WRITERS
from domain.route_plans import DispatchInput, DispatchState, dispatch_workflow_id
from workflows.dispatch import DispatchWorkflow

router = APIRouter(prefix=PREFIX + "/depots/{depot_id}/dispatch", tags=["routing"])
Reader = Annotated[CurrentUser, Depends(require_roles(*ALL_ROLES))]
Writer = Annotated[CurrentUser, Depends(require_roles(*FLEET_WRITERS))]


async def _depot(session: SessionDep, user: CurrentUser, depot_id: uuid.UUID) -> None:
    if await DepotRepository(session, user.organization_id).get(depot_id) is None:
        raise not_found("depot", depot_id)


async def _state(client: TemporalDep, depot_id: uuid.UUID) -> DispatchState | None:
    handle = client.get_workflow_handle_for(DispatchWorkflow.run, dispatch_workflow_id(str(depot_id)))
    try:
        described = await handle.describe()
        if described.status is not WorkflowExecutionStatus.RUNNING:
            return None
        return await handle.query(DispatchWorkflow.state)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return None
        raise


@router.put("", response_model=DispatchOut)
async def start_dispatch(
    depot_id: uuid.UUID,
    body: DispatchConfig,
    user: Writer,
    session: SessionDep,
    client: TemporalDep,
    resources: ResourcesDep,
) -> DispatchOut:
    """Turn auto-dispatch on: new and cancelled deliveries of the depot are re-planned in batches.

    Idempotent: if it is already on, it stays on with its current settings."""
    await _depot(session, user, depot_id)
    s = resources.settings
    await client.start_workflow(
        DispatchWorkflow.run,
        DispatchInput(
            organization_id=str(user.organization_id),
            depot_id=str(depot_id),
            debounce_s=body.debounce_seconds,
            time_limit_s=body.time_limit_seconds,
            routing_task_queue=s.temporal_routing_task_queue,
        ),
        id=dispatch_workflow_id(str(depot_id)),
        task_queue=s.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    return dispatch_out(depot_id, await _state(client, depot_id))


@router.get("", response_model=DispatchOut)
async def get_dispatch(
    depot_id: uuid.UUID, user: Reader, session: SessionDep, client: TemporalDep
) -> DispatchOut:
    await _depot(session, user, depot_id)
    return dispatch_out(depot_id, await _state(client, depot_id))


@router.delete("", response_model=DispatchOut)
async def stop_dispatch(
    depot_id: uuid.UUID, user: Writer, session: SessionDep, client: TemporalDep
) -> DispatchOut:
    """Turn auto-dispatch off; routes already planned stay as they are."""
    await _depot(session, user, depot_id)
    if await _state(client, depot_id) is not None:
        handle = client.get_workflow_handle_for(DispatchWorkflow.run, dispatch_workflow_id(str(depot_id)))
        await handle.signal(DispatchWorkflow.stop)
    return dispatch_out(depot_id, None)
