"""The delivery reconciler on the real dev server, over each SQL backend: a row left without its
workflow (issue 17's stuck delivery) gets one and can move; a workflow without a row gets its row;
a closed workflow's final state reaches its row; young rows are left alone; a second run finds
nothing; the worker's metrics and the schedule follow."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import delete, insert, update
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.resources import Resources
from db.models import DeliveryRow
from db.repositories.projection import projection_values
from domain.delivery import AssignRequest, CancelRequest, DeliveryState, DeliveryStatus
from domain.reconcile import (
    DELIVERY_STATE_QUERY,
    DELIVERY_WORKFLOW_TYPE,
    RECONCILE_SCHEDULE_ID,
    FindingAction,
    FindingKind,
    ReconcileInput,
    ReconcileResult,
)
from plumbing.temporal import TemporalConnector
from tests.integration.workflows.delivery_support import DISPATCHER, make_input
from tests.support import make_tenant, test_settings
from workers.compose import build_workers
from workers.metrics import WorkerMetrics
from workers.schedules import ensure_reconcile_schedule
from workflows.delivery import DeliveryWorkflow
from workflows.reconcile import ReconcileWorkflow

S = DeliveryStatus
VEH, DRV = str(uuid.uuid4()), str(uuid.uuid4())


@dataclass
class Env:
    client: Client
    resources: Resources
    metrics: WorkerMetrics
    org: str

    async def reconcile(self, **kw: object) -> ReconcileResult:
        params = ReconcileInput(requested_by="test", organization_id=self.org, **kw)  # type: ignore[arg-type]
        return await self.client.execute_workflow(
            ReconcileWorkflow.run,
            params,
            id=f"reconcile-test-{uuid.uuid4()}",
            task_queue=self.resources.settings.temporal_task_queue,
        )

    async def row(self, delivery_id: str) -> DeliveryRow | None:
        async with self.resources.sessionmaker() as session:
            return await session.get(DeliveryRow, uuid.UUID(delivery_id))

    async def start(self) -> WorkflowHandle[DeliveryWorkflow, DeliveryState]:
        params = make_input(self.org)
        handle = await self.client.start_workflow(
            DeliveryWorkflow.run,
            params,
            id=f"delivery-{params.delivery_id}",
            task_queue=self.resources.settings.temporal_task_queue,
        )
        for _ in range(100):  # the "created" projection
            if await self.row(params.delivery_id) is not None:
                return handle
            await asyncio.sleep(0.05)
        raise AssertionError("the workflow never projected its row")


@pytest.fixture
async def env(database_url: str, dev_env: WorkflowEnvironment) -> AsyncIterator[Env]:
    settings = test_settings(database_url=database_url, temporal_task_queue=f"rec-{uuid.uuid4().hex[:8]}")
    resources = await Resources.open(settings, TemporalConnector(settings, dev_env.client))
    metrics = WorkerMetrics(CollectorRegistry())
    org = str((await make_tenant(resources.sessionmaker)).organization_id)
    async with build_workers(dev_env.client, resources, ["default"], metrics=metrics)[0]:
        yield Env(dev_env.client, resources, metrics, org)
    await resources.close()


async def insert_stuck_row(env: Env, age: timedelta) -> str:
    """A row as a create leaves it when it stops between its insert and its workflow start:
    sequence 0, pending, the full state (with its spec) in `state`, and no workflow."""
    params = make_input(env.org)
    created = datetime.now(UTC) - age
    state = DeliveryState(
        delivery_id=params.delivery_id,
        organization_id=env.org,
        status=S.PENDING,
        spec=params.spec,
        created_at=created,
        updated_at=created,
        pending_since=created,
    )
    values = {**projection_values(state), "sequence": 0}
    async with env.resources.sessionmaker() as session, session.begin():
        await session.execute(
            insert(DeliveryRow).values(
                id=uuid.UUID(params.delivery_id),
                organization_id=uuid.UUID(env.org),
                created_at=created,
                **values,
            )
        )
    return params.delivery_id


async def workflow_exists(client: Client, delivery_id: str) -> bool:
    try:
        await client.get_workflow_handle(f"delivery-{delivery_id}").describe()
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise
        return False
    return True


def found_total(env: Env, kind: FindingKind) -> float:
    value = env.metrics.registry.get_sample_value("waybill_reconcile_found_total", {"kind": kind.value})
    return value or 0.0


async def test_a_stuck_row_gets_its_workflow_and_can_move_and_a_young_row_is_left_alone(env: Env) -> None:
    stuck = await insert_stuck_row(env, timedelta(minutes=10))
    young = await insert_stuck_row(env, timedelta(seconds=5))  # inside the 120 s grace period

    dry = await env.reconcile(repair=False)
    assert (dry.checked, dry.missing_workflow, dry.repaired, dry.dry_run) == (1, 1, 0, True)
    assert [(f.delivery_id, f.action) for f in dry.findings] == [(stuck, FindingAction.REPORTED)]
    assert not await workflow_exists(env.client, stuck)

    first = await env.reconcile()
    assert (first.checked, first.missing_workflow, first.repaired, first.unrepairable) == (1, 1, 1, 0)
    assert [(f.delivery_id, f.kind, f.action) for f in first.findings] == [
        (stuck, FindingKind.MISSING_WORKFLOW, FindingAction.STARTED)
    ]
    assert not await workflow_exists(env.client, young)

    handle = env.client.get_workflow_handle_for(DeliveryWorkflow.run, f"delivery-{stuck}")
    state = await handle.execute_update(DeliveryWorkflow.assign, AssignRequest(DISPATCHER, VEH, DRV))
    assert (state.status, state.vehicle_id) == (S.ASSIGNED, VEH)
    assert state.created_at is not None
    assert state.created_at < datetime.now(UTC) - timedelta(minutes=9)
    row = await env.row(stuck)
    assert row is not None
    assert (row.status, row.sequence) == ("assigned", state.sequence)
    assert (await handle.describe()).search_attributes["WaybillOrganizationId"] == [env.org]

    second = await env.reconcile()
    assert (second.checked, second.found, second.repaired) == (1, 0, 0)
    assert found_total(env, FindingKind.MISSING_WORKFLOW) == 2  # the dry run's and the repair's
    last = env.metrics.registry.get_sample_value
    assert last("waybill_reconcile_last_found", {"kind": "missing_workflow"}) == 0
    assert (last("waybill_reconcile_last_run_timestamp_seconds") or 0) > 0


async def test_a_workflow_without_a_row_gets_its_row(env: Env) -> None:
    handle = await env.start()
    delivery_id = handle.id.removeprefix("delivery-")
    async with env.resources.sessionmaker() as session, session.begin():
        await session.execute(delete(DeliveryRow).where(DeliveryRow.id == uuid.UUID(delivery_id)))

    # The workflow started a moment ago: inside the grace period it is not looked at.
    assert (await env.reconcile()).workflows_checked == 0
    dry = await env.reconcile(grace_seconds=0, repair=False)
    assert (dry.workflows_checked, dry.missing_row, dry.repaired) == (1, 1, 0)
    assert await env.row(delivery_id) is None

    first = await env.reconcile(grace_seconds=0)
    assert (first.missing_row, first.repaired) == (1, 1)
    assert first.findings[0].action is FindingAction.PROJECTED
    row = await env.row(delivery_id)
    state = await handle.query(DeliveryWorkflow.state)
    assert row is not None
    assert (row.status, row.sequence) == ("pending", state.sequence)
    assert str(row.organization_id) == env.org

    second = await env.reconcile(grace_seconds=0)
    assert (second.workflows_checked, second.checked, second.found) == (1, 1, 0)
    assert found_total(env, FindingKind.MISSING_ROW) == 2
    await handle.terminate("test over")


async def test_a_closed_workflow_projects_its_final_state_or_is_reported(env: Env) -> None:
    completed = await env.start()
    await completed.execute_update(DeliveryWorkflow.cancel, CancelRequest(DISPATCHER, "test"))
    await completed.result()
    cancelled_id = completed.id.removeprefix("delivery-")
    async with env.resources.sessionmaker() as session, session.begin():  # as if its last write was lost
        await session.execute(
            update(DeliveryRow)
            .where(DeliveryRow.id == uuid.UUID(cancelled_id))
            .values(status="pending", sequence=1)
        )
    terminated = await env.start()  # terminated by hand while pending: nothing can move it any more
    await terminated.terminate("by hand")
    terminated_id = terminated.id.removeprefix("delivery-")

    result = await env.reconcile(grace_seconds=0)
    assert (result.closed_workflow, result.repaired, result.unrepairable) == (2, 1, 1)
    actions = {f.delivery_id: (f.kind, f.action) for f in result.findings}
    assert actions == {
        cancelled_id: (FindingKind.CLOSED_WORKFLOW, FindingAction.PROJECTED),
        terminated_id: (FindingKind.CLOSED_WORKFLOW, FindingAction.UNREPAIRABLE),
    }
    row = await env.row(cancelled_id)
    assert row is not None
    assert row.status == "cancelled"
    again = await env.reconcile(grace_seconds=0)
    assert (again.found, again.unrepairable) == (1, 1)  # the terminated one is reported every run
    assert env.metrics.registry.get_sample_value("waybill_reconcile_last_unrepairable") == 1


async def test_the_schedule_is_created_updated_and_removed(env: Env) -> None:
    settings = env.resources.settings.model_copy(update={"reconcile_interval_seconds": 3600})
    assert await ensure_reconcile_schedule(env.client, settings)
    assert await ensure_reconcile_schedule(env.client, settings)  # again: updated in place
    handle = env.client.get_schedule_handle(RECONCILE_SCHEDULE_ID)
    described = await handle.describe()
    assert described.schedule.spec.intervals[0].every == timedelta(hours=1)
    action = described.schedule.action
    assert getattr(action, "workflow", None) == "ReconcileWorkflow"
    assert getattr(action, "task_queue", None) == settings.temporal_task_queue
    off = settings.model_copy(update={"reconcile_interval_seconds": 0})
    assert not await ensure_reconcile_schedule(env.client, off)
    with pytest.raises(RPCError):
        await handle.describe()
    assert not await ensure_reconcile_schedule(env.client, off)  # none to delete: fine


def test_the_names_the_activity_uses_are_the_workflow_s() -> None:
    """The reconciler cannot import workflows/ (same layer): its names must match theirs."""
    definition = DeliveryWorkflow.__temporal_workflow_definition  # type: ignore[attr-defined]
    assert definition.name == DELIVERY_WORKFLOW_TYPE
    assert DELIVERY_STATE_QUERY in definition.queries
    assert WorkflowExecutionStatus.RUNNING.name == "RUNNING"


async def test_the_cli_reports_then_repairs(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from waybill.cli import main

    stuck = await insert_stuck_row(env, timedelta(minutes=10))
    monkeypatch.setenv("TEMPORAL_ADDRESS", env.client.service_client.config.target_host)
    monkeypatch.setenv("WAYBILL_TEMPORAL_TASK_QUEUE", env.resources.settings.temporal_task_queue)
    # main() runs its own event loop: on a thread, while this loop runs the worker.
    assert await asyncio.to_thread(main, ["reconcile", "--org", env.org]) == 1
    out = capsys.readouterr().out
    assert "dry run: 1 open delivery row(s)" in out
    assert f"{stuck} missing_workflow: reported" in out
    assert not await workflow_exists(env.client, stuck)

    assert await asyncio.to_thread(main, ["reconcile", "--org", env.org, "--repair", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["missing_workflow"], report["repaired"], report["dry_run"]) == (1, 1, False)
    assert await workflow_exists(env.client, stuck)
    assert await asyncio.to_thread(main, ["reconcile", "--org", "acme"]) == 2
    assert "--org takes an organization id" in capsys.readouterr().err
