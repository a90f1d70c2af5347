"""Delivery actions: a dispatcher's or driver's workflow Update, answered with its outcome in time,
as 202 `action_pending` while it is not known, or as a problem when the workflow rejects it."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from api.deps import CurrentUser
from api.errors import ProblemError, temporal_unavailable
from api.services.crud import require_reference
from api.services.deliveries import actor_for, ensure_started, row_state
from db.models import DeliveryRow
from db.repositories.fleet import DriverRepository, VehicleRepository
from domain.delivery import AssignRequest, DeliveryState, allowed_actions, never_started, start_input
from domain.reconcile import delivery_workflow_id
from plumbing.settings import Settings
from starters.deliveries import delivery_options
from workflows.delivery import DeliveryWorkflow

A = TypeVar("A")

_REJECTIONS = {
    "InvalidTransition": (409, "invalid_transition"),
    "NotAssignedDriver": (403, "not_assigned_driver"),
    "Forbidden": (403, "forbidden"),
    "InvalidWindows": (422, "invalid_windows"),
    "ProofTooFar": (422, "proof_too_far"),
    "ProofRequired": (422, "proof_required"),
    "OverrideRequired": (422, "override_required"),
    "ReasonRequired": (422, "reason_required"),
    "InvalidId": (422, "invalid_reference"),
}


# Temporal answers that say "not reachable now": the action was most likely not delivered.
_UNREACHABLE = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.DEADLINE_EXCEEDED}
)


def action_id(action: str, key: str | None) -> str:
    """The Update id of an action: derived from the caller's Idempotency-Key, so that a retry is
    the same Update (Temporal de-duplicates by id and answers with the first outcome); random
    without one. Hashed: any key fits, and ids stay short and URL-safe."""
    if key is None:
        return f"{action}-{uuid.uuid4().hex}"
    return f"{action}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def action_location(delivery_id: uuid.UUID | str, update_id: str) -> str:
    return f"/api/v1/deliveries/{delivery_id}/actions/{update_id}"


async def run_update(
    client: Client,
    state: DeliveryState,
    update: UpdateMethodMultiParam[[DeliveryWorkflow, A], DeliveryState],
    arg: A,
    *,
    action: str,
    key: str | None,
    settings: Settings,
) -> DeliveryState:
    """Run an action's Update and answer with its outcome within `action_wait_seconds`.

    A rejection becomes a problem with the current status and the allowed actions; an outcome not
    known in time is 202 `action_pending` with where to learn it; Temporal out of reach is 503.
    Callers hold no database connection meanwhile (a dead worker must not drain the pool)."""
    handle = client.get_workflow_handle_for(DeliveryWorkflow.run, delivery_workflow_id(state.delivery_id))
    update_id = action_id(action, key)

    async def send() -> DeliveryState:
        try:
            return await handle.execute_update(update, arg, id=update_id)
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND or not never_started(state):
                raise
        # The create stopped between its row and its workflow start: start it, then act on it.
        params = start_input(state, "system:recovered", delivery_options(settings))
        await ensure_started(client, params, settings)
        return await handle.execute_update(update, arg, id=update_id)

    return await _outcome(client, state, update_id, send, settings)


async def action_outcome(
    client: Client, state: DeliveryState, update_id: str, settings: Settings
) -> DeliveryState:
    """The outcome of an earlier action (GET .../actions/{id}): 200 once known, 202 while pending,
    404 action_not_found if Temporal has no record of it (it was not applied: safe to send again)."""
    handle = client.get_workflow_handle_for(DeliveryWorkflow.run, delivery_workflow_id(state.delivery_id))
    update = handle.get_update_handle(update_id, result_type=DeliveryState)

    async def poll() -> DeliveryState:
        try:
            result: DeliveryState = await update.result()
            return result
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                raise ProblemError(
                    404,
                    "action_not_found",
                    f"no action {update_id} is known for this delivery: it was not applied",
                ) from None
            raise

    return await _outcome(client, state, update_id, poll, settings)


async def _outcome(
    client: Client,
    state: DeliveryState,
    update_id: str,
    wait: Callable[[], Awaitable[DeliveryState]],
    settings: Settings,
) -> DeliveryState:
    try:
        async with asyncio.timeout(settings.action_wait_seconds):
            return await wait()
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise await _not_known_yet(client, state, update_id) from None
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type in _REJECTIONS:
            status, code = _REJECTIONS[cause.type]
            details: dict[str, Any] = dict(cause.details[0]) if cause.details else {}
            # `status` is the HTTP status in a problem document: the delivery's goes in current_status.
            details["current_status"] = details.pop("status", None)
            raise ProblemError(status, code, cause.message, **details) from None
        raise
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:  # the workflow has finished: nothing is allowed any more
            raise ProblemError(
                409,
                "invalid_transition",
                f"the delivery is {state.status.value}",
                current_status=state.status.value,
                allowed_actions=allowed_actions(state.status),
            ) from None
        if exc.status in _UNREACHABLE:
            raise temporal_unavailable(action_id=update_id) from None
        raise


async def _not_known_yet(client: Client, state: DeliveryState, update_id: str) -> ProblemError:
    """202 if Temporal answers (the action waits for a worker and applies when one polls), 503 if
    it does not (the action most likely never arrived). Either way the Location tells the outcome,
    and a retry under the same Idempotency-Key can never apply the action twice."""
    location = action_location(state.delivery_id, update_id)
    try:
        await client.workflow_service.get_system_info(
            GetSystemInfoRequest(), retry=False, timeout=timedelta(seconds=1)
        )
    except RPCError:
        return temporal_unavailable(action_id=update_id, location=location)
    return ProblemError(
        202,
        "action_pending",
        "the action is accepted for processing but its outcome is not known yet; "
        "GET the Location for it, or retry with the same Idempotency-Key",
        headers={"Location": location, "Retry-After": "1"},
        action_id=update_id,
        location=location,
    )


async def let_go(session: AsyncSession, row: DeliveryRow) -> DeliveryState:
    """The row's state, and the session's connection back to the pool: what follows may wait on
    Temporal for seconds (a dead worker), and waiting callers must not drain the pool."""
    state = row_state(row)
    await session.close()
    return state


async def act(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    row: DeliveryRow,
    update: Any,
    req: Any,
    key: str | None,
) -> DeliveryState:
    """Run an action on the delivery `row`."""
    state = await let_go(session, row)
    action = update.__name__  # the Update's method name: part of the Update id (action_id)
    return await run_update(client, state, update, req, action=action, key=key, settings=settings)


async def assignment(
    session: AsyncSession, user: CurrentUser, vehicle_id: uuid.UUID, driver_id: uuid.UUID | None
) -> AssignRequest:
    """The assign Update's request: the vehicle, and its driver (by default its usual active one)."""
    org = user.organization_id
    await require_reference(VehicleRepository(session, org), vehicle_id, "vehicle_id")
    if driver_id is None:
        usual = await DriverRepository(session, org).usual_for_vehicle(vehicle_id)
        driver_id = usual.id if usual else None
    else:
        await require_reference(DriverRepository(session, org), driver_id, "driver_id")
    return AssignRequest(
        await actor_for(session, user), str(vehicle_id), str(driver_id) if driver_id else None
    )
