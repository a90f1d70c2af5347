"""Client-side calls into DeliveryWorkflow (`delivery-{id}`): its start, written once with its id and
policies for the API's creates, the recovery of never-started rows and the reconciler; the visibility
queries, queries and Updates the reconciler and route planning make (`DeliveryStarter`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.resources import UpdateRejected, WorkflowCallError
from domain.delivery import AssignRequest, DeliveryInput, DeliveryOptions, DeliveryState, start_input
from domain.reconcile import DELIVERY_WORKFLOW_TYPE, delivery_workflow_id
from domain.search_attributes import ORGANIZATION_ID
from domain.workflow_status import RunStatus
from plumbing.settings import Settings
from starters.base import Starter
from workflows.delivery import DeliveryWorkflow


def delivery_options(settings: Settings) -> DeliveryOptions:
    """The options of a new delivery's workflow, one function for the API's creates and the
    reconciler's starts: a workflow the reconciler starts behaves like one the API started."""
    return DeliveryOptions(
        pod_max_distance_m=settings.delivery_pod_max_distance_m,
        unassigned_alert_minutes=settings.delivery_unassigned_alert_minutes,
    )


async def start_delivery_workflow(
    client: Client, params: DeliveryInput, task_queue: str, rpc_timeout: timedelta | None = None
) -> None:
    """Start `delivery-{id}`; a running one is reused, a finished one is never started again
    (WorkflowAlreadyStartedError)."""
    await client.start_workflow(
        DeliveryWorkflow.run,
        params,
        id=delivery_workflow_id(params.delivery_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        rpc_timeout=rpc_timeout,
    )


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


RUNNING = f"WorkflowType = {_quote(DELIVERY_WORKFLOW_TYPE)} AND ExecutionStatus = 'Running'"


class DeliveryStarter(Starter):
    """activities.resources.DeliveryCalls on Temporal's client."""

    async def _handle(self, delivery_id: str) -> WorkflowHandle[DeliveryWorkflow, DeliveryState]:
        client = await self._client()
        return client.get_workflow_handle_for(DeliveryWorkflow.run, delivery_workflow_id(delivery_id))

    async def start_delivery(self, state: DeliveryState, created_by: str) -> bool:
        params = start_input(state, created_by, delivery_options(self._settings))
        try:
            await start_delivery_workflow(await self._client(), params, self._settings.temporal_task_queue)
        except WorkflowAlreadyStartedError:
            return False
        return True

    async def delivery_status(self, delivery_id: str) -> RunStatus | None:
        try:
            status = (await (await self._handle(delivery_id)).describe()).status
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND:
                raise  # Temporal unavailable: the caller fails (an activity is retried)
            return None
        return _run_status(status)

    async def running_deliveries(self, workflow_ids: list[str]) -> set[str]:
        query = f"{RUNNING} AND WorkflowId IN ({', '.join(_quote(i) for i in workflow_ids)})"
        client = await self._client()
        return {wf.id async for wf in client.list_workflows(query, page_size=len(workflow_ids))}

    async def deliveries_running_since(
        self, started_before: datetime, organization_id: str | None, page_size: int
    ) -> AsyncIterator[str]:
        query = f"{RUNNING} AND StartTime < {_quote(started_before.strftime('%Y-%m-%dT%H:%M:%S.%fZ'))}"
        if organization_id is not None:
            query += f" AND {ORGANIZATION_ID} = {_quote(organization_id)}"
        client = await self._client()
        async for wf in client.list_workflows(query, page_size=page_size):
            yield wf.id

    async def delivery_state(self, delivery_id: str) -> DeliveryState:
        try:
            return await (await self._handle(delivery_id)).query(DeliveryWorkflow.state)
        except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
            raise WorkflowCallError(str(exc)) from exc

    async def delivery_result(self, delivery_id: str) -> DeliveryState:
        try:
            return await (await self._handle(delivery_id)).result(follow_runs=False)
        except (RPCError, WorkflowFailureError) as exc:
            raise WorkflowCallError(str(exc)) from exc

    async def assign_delivery(self, delivery_id: str, req: AssignRequest) -> DeliveryState:
        try:
            return await (await self._handle(delivery_id)).execute_update(DeliveryWorkflow.assign, req)
        except WorkflowUpdateFailedError as exc:
            raise UpdateRejected(f"{exc.cause}") from exc


def _run_status(status: WorkflowExecutionStatus | None) -> RunStatus | None:
    return None if status is None else RunStatus[status.name]
