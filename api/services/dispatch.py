"""Auto-dispatch of a depot: its DispatchWorkflow started, read and stopped (404 for a depot that is
not the caller's organization's)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from api.deps import CurrentUser
from api.errors import not_found
from api.schemas.routing import DispatchConfig, DispatchOut, dispatch_out
from db.repositories.fleet import DepotRepository
from domain.route_plans import DispatchInput, DispatchState, dispatch_workflow_id
from plumbing.settings import Settings
from workflows.dispatch import DispatchWorkflow


async def _depot_handle(
    session: AsyncSession, client: Client, user: CurrentUser, depot_id: uuid.UUID
) -> WorkflowHandle[DispatchWorkflow, DispatchState]:
    if await DepotRepository(session, user.organization_id).get(depot_id) is None:
        raise not_found("depot", depot_id)
    return client.get_workflow_handle_for(DispatchWorkflow.run, dispatch_workflow_id(str(depot_id)))


async def _state(handle: WorkflowHandle[DispatchWorkflow, DispatchState]) -> DispatchState | None:
    try:
        described = await handle.describe()
        if described.status is not WorkflowExecutionStatus.RUNNING:
            return None
        return await handle.query(DispatchWorkflow.state)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return None
        raise


async def start(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    user: CurrentUser,
    depot_id: uuid.UUID,
    body: DispatchConfig,
) -> DispatchOut:
    """Idempotent: if it is already on, it stays on with its current settings."""
    handle = await _depot_handle(session, client, user, depot_id)
    await client.start_workflow(
        DispatchWorkflow.run,
        DispatchInput(
            organization_id=str(user.organization_id),
            depot_id=str(depot_id),
            debounce_s=body.debounce_seconds,
            time_limit_s=body.time_limit_seconds,
            routing_task_queue=settings.temporal_routing_task_queue,
        ),
        id=handle.id,
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    return dispatch_out(depot_id, await _state(handle))


async def read(session: AsyncSession, client: Client, user: CurrentUser, depot_id: uuid.UUID) -> DispatchOut:
    handle = await _depot_handle(session, client, user, depot_id)
    return dispatch_out(depot_id, await _state(handle))


async def stop(session: AsyncSession, client: Client, user: CurrentUser, depot_id: uuid.UUID) -> DispatchOut:
    """Routes already planned stay as they are."""
    handle = await _depot_handle(session, client, user, depot_id)
    if await _state(handle) is not None:
        await handle.signal(DispatchWorkflow.stop)
    return dispatch_out(depot_id, None)
