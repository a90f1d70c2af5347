"""The delivery reconciler: delivery rows and DeliveryWorkflows out of step, found and repaired.

Two passes, each a page at a time (heartbeating after every page):

- rows: every non-terminal `deliveries` row older than the grace period (a create in flight has a
  row whose workflow is still starting) must have a running `delivery-{id}`. One visibility query
  per page finds the running ones; each of the rest is described (visibility lags, describe does not):
  none at all and the row never projected (sequence 0: the create stopped between its insert and its
  start) → the workflow is started from the row, with the input the API builds; none at all after
  projections → reported (it existed: retention or a lost namespace; reviving it is an operator's
  call); closed → the row is written from its final state if that is newer, else reported.
- workflows: every running DeliveryWorkflow started before the grace period must have a row; a
  missing one is written from the workflow's queried state through the projection code path.

Both repairs are idempotent (a start that finds the workflow reuses it; the projection moves only
forward), so two runs at once or a retried run do no harm: a retry starts over.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.deliveries import write_projection
from activities.interfaces import implements
from activities.interfaces.reconcile import ReconcileInterface
from db.models import DeliveryRow
from domain.delivery import TERMINAL, DeliveryOptions, DeliveryState, start_input
from domain.reconcile import (
    DELIVERY_STATE_QUERY,
    DELIVERY_WORKFLOW_TYPE,
    Finding,
    FindingAction,
    FindingKind,
    ReconcileInput,
    ReconcileResult,
    delivery_workflow_id,
)
from domain.search_attributes import ORGANIZATION_ID
from plumbing.codec import from_jsonable

if TYPE_CHECKING:
    from activities.resources import ActivityResources as Resources
    from plumbing.settings import Settings

log = logging.getLogger(__name__)
PAGE = 200
CREATED_BY = "system:reconciler"
_TERMINAL = [s.value for s in TERMINAL]


def delivery_options(settings: Settings) -> DeliveryOptions:
    """The options of a new delivery's workflow, one function for the API's creates and the
    reconciler's starts: a workflow the reconciler starts behaves like one the API started."""
    return DeliveryOptions(
        pod_max_distance_m=settings.delivery_pod_max_distance_m,
        unassigned_alert_minutes=settings.delivery_unassigned_alert_minutes,
    )


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ReconcileActivities(ReconcileInterface):
    """`on_result` hears every finished run (the worker's metrics)."""

    def __init__(
        self, resources: Resources, on_result: Callable[[ReconcileResult], None] | None = None
    ) -> None:
        self._r = resources
        self._on_result = on_result

    @implements(ReconcileInterface.reconcile_deliveries)
    async def reconcile_deliveries(self, params: ReconcileInput) -> ReconcileResult:
        s = self._r.settings
        grace = s.reconcile_grace_seconds if params.grace_seconds is None else params.grace_seconds
        cutoff = datetime.now(UTC) - timedelta(seconds=grace)
        client = await self._r.temporal.get()
        result = ReconcileResult(dry_run=not params.repair)
        await self._rows(client, params, cutoff, result)
        await self._workflows(client, params, cutoff, result)
        result.checked_at = datetime.now(UTC)
        log.info(
            "reconciled deliveries: %d row(s), %d workflow(s) checked, %d found, %d repaired, "
            "%d unrepairable",
            result.checked,
            result.workflows_checked,
            result.found,
            result.repaired,
            result.unrepairable,
            extra={"requested_by": params.requested_by, "dry_run": result.dry_run},
        )
        if self._on_result is not None:
            self._on_result(result)
        return result

    # Rows without a running workflow -------------------------------------------------------

    async def _rows(
        self, client: Client, params: ReconcileInput, cutoff: datetime, result: ReconcileResult
    ) -> None:
        after: uuid.UUID | None = None
        while True:
            query = (
                select(DeliveryRow)
                .where(DeliveryRow.status.not_in(_TERMINAL), DeliveryRow.created_at < cutoff)
                .order_by(DeliveryRow.id)
                .limit(PAGE)
            )
            if params.organization_id is not None:
                query = query.where(DeliveryRow.organization_id == uuid.UUID(params.organization_id))
            if after is not None:
                query = query.where(DeliveryRow.id > after)
            async with self._r.sessionmaker() as session:
                rows = list((await session.scalars(query)).all())
            if not rows:
                return
            result.checked += len(rows)
            running = await self._running(client, [delivery_workflow_id(str(r.id)) for r in rows])
            for row in rows:
                if delivery_workflow_id(str(row.id)) not in running:
                    finding = await self._row_without_running_workflow(client, row, params.repair)
                    if finding is not None:
                        self._found(result, finding)
            after = rows[-1].id
            activity.heartbeat(f"rows up to {after}")

    async def _running(self, client: Client, workflow_ids: list[str]) -> set[str]:
        """Which of the ids have a running execution, by one visibility query (may lag: a miss is
        checked again by describe)."""
        query = (
            f"WorkflowType = {_quote(DELIVERY_WORKFLOW_TYPE)} AND ExecutionStatus = 'Running' "
            f"AND WorkflowId IN ({', '.join(_quote(i) for i in workflow_ids)})"
        )
        return {wf.id async for wf in client.list_workflows(query, page_size=len(workflow_ids))}

    async def _row_without_running_workflow(
        self, client: Client, row: DeliveryRow, repair: bool
    ) -> Finding | None:
        delivery_id = str(row.id)
        handle = client.get_workflow_handle(delivery_workflow_id(delivery_id))
        try:
            status = (await handle.describe()).status
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND:
                raise  # Temporal unavailable: the activity fails and is retried
            status = None
        if status is WorkflowExecutionStatus.RUNNING:
            return None  # visibility had not caught up
        if status is None:
            if row.sequence > 0:
                return Finding(
                    delivery_id,
                    FindingKind.MISSING_WORKFLOW,
                    FindingAction.UNREPAIRABLE,
                    f"no workflow, but the row is {row.status} at sequence {row.sequence}: the workflow "
                    "ran and is gone (retention or a lost namespace); not restarted",
                )
            if not repair:
                return Finding(delivery_id, FindingKind.MISSING_WORKFLOW, FindingAction.REPORTED)
            return await self._start(client, row)
        return await self._closed(client, row, status, repair)

    async def _start(self, client: Client, row: DeliveryRow) -> Finding:
        """Start the workflow a create left unstarted: the API's input, id and policies."""
        state = from_jsonable(DeliveryState, row.state)
        if state.created_at is None:
            state = state.with_(created_at=row.created_at)
        params = start_input(state, CREATED_BY, delivery_options(self._r.settings))
        try:
            await client.start_workflow(
                DELIVERY_WORKFLOW_TYPE,
                params,
                id=delivery_workflow_id(params.delivery_id),
                task_queue=self._r.settings.temporal_task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            # Started and closed since the describe: the next run sees how it ended.
            return Finding(
                params.delivery_id,
                FindingKind.MISSING_WORKFLOW,
                FindingAction.REPORTED,
                "its workflow appeared while it was being repaired",
            )
        return Finding(params.delivery_id, FindingKind.MISSING_WORKFLOW, FindingAction.STARTED)

    async def _closed(
        self, client: Client, row: DeliveryRow, status: WorkflowExecutionStatus, repair: bool
    ) -> Finding:
        delivery_id = str(row.id)
        name = status.name.lower()
        final = await self._final_state(client, delivery_id, status)
        if final is None:
            return Finding(
                delivery_id,
                FindingKind.CLOSED_WORKFLOW,
                FindingAction.UNREPAIRABLE,
                f"workflow {name} and its state cannot be queried; the row says {row.status}",
            )
        if final.sequence <= row.sequence:
            return Finding(
                delivery_id,
                FindingKind.CLOSED_WORKFLOW,
                FindingAction.UNREPAIRABLE,
                f"workflow {name} while the delivery was {final.status.value}: nothing newer to project; "
                "no action can move it any more",
            )
        if not repair:
            return Finding(delivery_id, FindingKind.CLOSED_WORKFLOW, FindingAction.REPORTED)
        await write_projection(self._r.sessionmaker, final, row.created_at)
        return Finding(
            delivery_id,
            FindingKind.CLOSED_WORKFLOW,
            FindingAction.PROJECTED,
            f"workflow {name}: row {row.status}@{row.sequence} -> {final.status.value}@{final.sequence}",
        )

    async def _final_state(
        self, client: Client, delivery_id: str, status: WorkflowExecutionStatus
    ) -> DeliveryState | None:
        """A completed workflow's result; otherwise its state by query (a worker replays it)."""
        handle = client.get_workflow_handle(delivery_workflow_id(delivery_id), result_type=DeliveryState)
        try:
            if status is WorkflowExecutionStatus.COMPLETED:
                state: DeliveryState = await handle.result(follow_runs=False)
                return state
            return await self._query(client, delivery_id)
        except (RPCError, WorkflowFailureError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
            # Query refused or failed, history gone: reported, the run goes on.
            log.warning("cannot read the final state of delivery %s: %s", delivery_id, exc)
            return None

    async def _query(self, client: Client, delivery_id: str) -> DeliveryState:
        handle = client.get_workflow_handle(delivery_workflow_id(delivery_id))
        state: DeliveryState = await handle.query(DELIVERY_STATE_QUERY, result_type=DeliveryState)
        return state

    # Running workflows without a row -----------------------------------------------------------

    async def _workflows(
        self, client: Client, params: ReconcileInput, cutoff: datetime, result: ReconcileResult
    ) -> None:
        query = (
            f"WorkflowType = {_quote(DELIVERY_WORKFLOW_TYPE)} AND ExecutionStatus = 'Running' "
            f"AND StartTime < {_quote(cutoff.strftime('%Y-%m-%dT%H:%M:%S.%fZ'))}"
        )
        if params.organization_id is not None:
            query += f" AND {ORGANIZATION_ID} = {_quote(params.organization_id)}"
        batch: list[str] = []
        async for wf in client.list_workflows(query, page_size=PAGE):
            batch.append(wf.id)
            if len(batch) == PAGE:
                await self._rows_for(client, batch, params.repair, result)
                batch = []
        if batch:
            await self._rows_for(client, batch, params.repair, result)

    async def _rows_for(
        self, client: Client, workflow_ids: list[str], repair: bool, result: ReconcileResult
    ) -> None:
        result.workflows_checked += len(workflow_ids)
        by_id: dict[uuid.UUID, str] = {}
        for wid in workflow_ids:
            try:
                by_id[uuid.UUID(wid.removeprefix("delivery-"))] = wid
            except ValueError:
                continue  # not a delivery id: a DeliveryWorkflow started by hand under another id
        async with self._r.sessionmaker() as session:
            present = set(
                (await session.scalars(select(DeliveryRow.id).where(DeliveryRow.id.in_(by_id)))).all()
            )
        for delivery_id in by_id.keys() - present:
            self._found(result, await self._write_missing_row(client, str(delivery_id), repair))
        activity.heartbeat(f"workflows up to {workflow_ids[-1]}")

    async def _write_missing_row(self, client: Client, delivery_id: str, repair: bool) -> Finding:
        if not repair:
            return Finding(delivery_id, FindingKind.MISSING_ROW, FindingAction.REPORTED)
        try:
            state = await self._query(client, delivery_id)
            await write_projection(self._r.sessionmaker, state, state.updated_at or datetime.now(UTC))
        except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError, IntegrityError) as exc:
            # The query failed (no worker for it, closed meanwhile), or the insert did: another row
            # holds its external_ref, or its organization is gone.
            return Finding(delivery_id, FindingKind.MISSING_ROW, FindingAction.UNREPAIRABLE, str(exc)[:300])
        return Finding(delivery_id, FindingKind.MISSING_ROW, FindingAction.PROJECTED)

    def _found(self, result: ReconcileResult, finding: Finding) -> None:
        log.warning(
            "delivery %s: %s, %s%s",
            finding.delivery_id,
            finding.kind.value,
            finding.action.value,
            f" ({finding.detail})" if finding.detail else "",
            extra={"delivery_id": finding.delivery_id, "kind": finding.kind.value},
        )
        result.add(finding)
