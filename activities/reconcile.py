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

from sqlalchemy.exc import IntegrityError
from temporalio import activity

from activities.interfaces import implements
from activities.interfaces.reconcile import ReconcileInterface
from activities.resources import WorkflowCallError
from db.models import DeliveryRow
from db.repositories.projection import write_projection
from db.repositories.reconcile import delivery_ids_with_rows, open_rows_created_before
from domain.delivery import DeliveryState
from domain.reconcile import (
    Finding,
    FindingAction,
    FindingKind,
    ReconcileInput,
    ReconcileResult,
    delivery_workflow_id,
)
from domain.workflow_status import RunStatus
from plumbing.codec import from_jsonable

if TYPE_CHECKING:
    from activities.resources import ActivityResources as Resources
    from activities.resources import DeliveryCalls

log = logging.getLogger(__name__)
PAGE = 200
CREATED_BY = "system:reconciler"


class ReconcileActivities(ReconcileInterface):
    """`workflows` reaches the DeliveryWorkflows (starters/deliveries.py); `on_result` hears every
    finished run (the worker's metrics)."""

    def __init__(
        self,
        resources: Resources,
        workflows: DeliveryCalls,
        on_result: Callable[[ReconcileResult], None] | None = None,
    ) -> None:
        self._r = resources
        self._workflows = workflows
        self._on_result = on_result

    @implements(ReconcileInterface.reconcile_deliveries)
    async def reconcile_deliveries(self, params: ReconcileInput) -> ReconcileResult:
        s = self._r.settings
        grace = s.reconcile_grace_seconds if params.grace_seconds is None else params.grace_seconds
        cutoff = datetime.now(UTC) - timedelta(seconds=grace)
        result = ReconcileResult(dry_run=not params.repair)
        await self._rows(params, cutoff, result)
        await self._workflows_without_rows(params, cutoff, result)
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

    async def _rows(self, params: ReconcileInput, cutoff: datetime, result: ReconcileResult) -> None:
        org = uuid.UUID(params.organization_id) if params.organization_id is not None else None
        after: uuid.UUID | None = None
        while True:
            async with self._r.sessionmaker() as session:
                rows = await open_rows_created_before(session, cutoff, org, after, PAGE)
            if not rows:
                return
            result.checked += len(rows)
            running = await self._workflows.running_deliveries(
                [delivery_workflow_id(str(r.id)) for r in rows]
            )
            for row in rows:
                if delivery_workflow_id(str(row.id)) not in running:
                    finding = await self._row_without_running_workflow(row, params.repair)
                    if finding is not None:
                        self._found(result, finding)
            after = rows[-1].id
            activity.heartbeat(f"rows up to {after}")

    async def _row_without_running_workflow(self, row: DeliveryRow, repair: bool) -> Finding | None:
        """Visibility may lag: each row it missed is described."""
        delivery_id = str(row.id)
        status = await self._workflows.delivery_status(delivery_id)  # Temporal down: the activity retries
        if status is RunStatus.RUNNING:
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
            return await self._start(row)
        return await self._closed(row, status, repair)

    async def _start(self, row: DeliveryRow) -> Finding:
        """Start the workflow a create left unstarted: the API's input, id and policies."""
        state = from_jsonable(DeliveryState, row.state)
        if state.created_at is None:
            state = state.with_(created_at=row.created_at)
        if not await self._workflows.start_delivery(state, CREATED_BY):
            # Started and closed since the describe: the next run sees how it ended.
            return Finding(
                state.delivery_id,
                FindingKind.MISSING_WORKFLOW,
                FindingAction.REPORTED,
                "its workflow appeared while it was being repaired",
            )
        return Finding(state.delivery_id, FindingKind.MISSING_WORKFLOW, FindingAction.STARTED)

    async def _closed(self, row: DeliveryRow, status: RunStatus, repair: bool) -> Finding:
        delivery_id = str(row.id)
        name = status.value
        final = await self._final_state(delivery_id, status)
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
        async with self._r.sessionmaker() as session, session.begin():
            await write_projection(session, final, row.created_at)
        return Finding(
            delivery_id,
            FindingKind.CLOSED_WORKFLOW,
            FindingAction.PROJECTED,
            f"workflow {name}: row {row.status}@{row.sequence} -> {final.status.value}@{final.sequence}",
        )

    async def _final_state(self, delivery_id: str, status: RunStatus) -> DeliveryState | None:
        """A completed workflow's result; otherwise its state by query (a worker replays it)."""
        try:
            if status is RunStatus.COMPLETED:
                return await self._workflows.delivery_result(delivery_id)
            return await self._workflows.delivery_state(delivery_id)
        except WorkflowCallError as exc:
            # Query refused or failed, history gone: reported, the run goes on.
            log.warning("cannot read the final state of delivery %s: %s", delivery_id, exc)
            return None

    # Running workflows without a row -----------------------------------------------------------

    async def _workflows_without_rows(
        self, params: ReconcileInput, cutoff: datetime, result: ReconcileResult
    ) -> None:
        batch: list[str] = []
        async for wid in self._workflows.deliveries_running_since(cutoff, params.organization_id, PAGE):
            batch.append(wid)
            if len(batch) == PAGE:
                await self._rows_for(batch, params.repair, result)
                batch = []
        if batch:
            await self._rows_for(batch, params.repair, result)

    async def _rows_for(self, workflow_ids: list[str], repair: bool, result: ReconcileResult) -> None:
        result.workflows_checked += len(workflow_ids)
        by_id: dict[uuid.UUID, str] = {}
        for wid in workflow_ids:
            try:
                by_id[uuid.UUID(wid.removeprefix("delivery-"))] = wid
            except ValueError:
                continue  # not a delivery id: a DeliveryWorkflow started by hand under another id
        async with self._r.sessionmaker() as session:
            present = await delivery_ids_with_rows(session, by_id)
        for delivery_id in by_id.keys() - present:
            self._found(result, await self._write_missing_row(str(delivery_id), repair))
        activity.heartbeat(f"workflows up to {workflow_ids[-1]}")

    async def _write_missing_row(self, delivery_id: str, repair: bool) -> Finding:
        if not repair:
            return Finding(delivery_id, FindingKind.MISSING_ROW, FindingAction.REPORTED)
        try:
            state = await self._workflows.delivery_state(delivery_id)
            async with self._r.sessionmaker() as session, session.begin():
                await write_projection(session, state, state.updated_at or datetime.now(UTC))
        except (WorkflowCallError, IntegrityError) as exc:
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
