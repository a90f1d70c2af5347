"""DeliveryWorkflow against real Temporal servers (dev server and time-skipping)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.resources import Resources
from domain.delivery import (
    ArrivalSignal,
    AssignRequest,
    CancelRequest,
    DeliverRequest,
    DeliveryOptions,
    DeliveryState,
    DeliveryStatus,
    DriverRequest,
    EtaSignal,
    FailRequest,
    FailureReason,
)
from plumbing.temporal import TemporalConnector
from tests.integration.workflows.delivery_support import DISPATCHER, DROP, driver, make_input
from tests.support import make_tenant, test_settings
from workers.compose import build_workers
from workflows.delivery import DeliveryWorkflow

S = DeliveryStatus
VEH, DRV, DRV2 = (str(uuid.uuid4()) for _ in range(3))


@pytest.fixture
async def worker(
    sqlite_url: str, workflow_env: WorkflowEnvironment
) -> AsyncIterator[tuple[Worker, Resources]]:
    settings = test_settings(database_url=sqlite_url, temporal_task_queue=f"dq-{uuid.uuid4().hex[:8]}")
    res = await Resources.open(settings, TemporalConnector(settings, workflow_env.client))
    w = build_workers(workflow_env.client, res, ["default"])[0]
    w.org = str((await make_tenant(res.sessionmaker)).organization_id)  # type: ignore[attr-defined]
    async with w:
        yield w, res
    await res.close()


async def start(
    env: WorkflowEnvironment, w: Worker, **kw: object
) -> WorkflowHandle[DeliveryWorkflow, DeliveryState]:
    params = make_input(w.org, **kw)  # type: ignore[arg-type, attr-defined]
    return await env.client.start_workflow(
        DeliveryWorkflow.run, params, id=f"delivery-{params.delivery_id}", task_queue=w.task_queue
    )


async def test_happy_path_and_timeline(
    workflow_env: WorkflowEnvironment, worker: tuple[Worker, Resources]
) -> None:
    w, res = worker
    h = await start(workflow_env, w)
    st = await h.execute_update(DeliveryWorkflow.assign, AssignRequest(DISPATCHER, VEH, DRV))
    assert (st.status, st.vehicle_id) == (S.ASSIGNED, VEH)
    d = driver(DRV)
    await h.execute_update(DeliveryWorkflow.accept, DriverRequest(d))
    await h.execute_update(DeliveryWorkflow.pick_up, DriverRequest(d))
    await h.execute_update(DeliveryWorkflow.depart, DriverRequest(d))
    await h.execute_update(DeliveryWorkflow.arrive, DriverRequest(d, DROP))
    st = await h.execute_update(DeliveryWorkflow.deliver, DeliverRequest(d, "Ms Recipient", DROP))
    assert st.status is S.DELIVERED
    final = await h.result()
    assert final.proof is not None
    assert final.proof.distance_m == 0.0
    events = await res.history.events(uuid.UUID(final.organization_id), uuid.UUID(final.delivery_id))
    assert [e.type for e in events] == [
        "created",
        "assigned",
        "accepted",
        "picked_up",
        "out_for_delivery",
        "arrived",
        "delivered",
    ]
    assert [e.sequence for e in events] == list(range(1, 8))
    assert events[1].actor == "dispatcher:u-dispatch"


async def test_illegal_transition_rejected_before_history(
    workflow_env: WorkflowEnvironment, worker: tuple[Worker, Resources]
) -> None:
    w, _ = worker
    h = await start(workflow_env, w)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await h.execute_update(DeliveryWorkflow.pick_up, DriverRequest(driver(DRV)))
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidTransition"
    assert cause.details[0] == {"status": "pending", "allowed_actions": ["assign", "cancel", "reschedule"]}
    # Another driver than the assigned one is refused too.
    assigned = await h.execute_update(DeliveryWorkflow.assign, AssignRequest(DISPATCHER, VEH, DRV))
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await h.execute_update(DeliveryWorkflow.pick_up, DriverRequest(driver(DRV2)))
    assert isinstance(info.value.cause, ApplicationError)
    assert info.value.cause.type == "NotAssignedDriver"
    history = await h.fetch_history()
    # Rejected in the validator: no update was accepted into history for either attempt.
    accepted = [
        e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert len(accepted) == 1
    after = await h.query(DeliveryWorkflow.state)
    assert (after.status, after.driver_id) == (S.ASSIGNED, DRV)
    assert after.sequence >= assigned.sequence


async def test_failed_attempts_then_returned(
    workflow_env: WorkflowEnvironment, worker: tuple[Worker, Resources]
) -> None:
    w, _ = worker
    h = await start(workflow_env, w, max_attempts=2)
    for attempt in (1, 2):
        await h.execute_update(DeliveryWorkflow.assign, AssignRequest(DISPATCHER, VEH, DRV))
        await h.execute_update(DeliveryWorkflow.pick_up, DriverRequest(driver(DRV)))
        st = await h.execute_update(
            DeliveryWorkflow.fail, FailRequest(driver(DRV), FailureReason.RECIPIENT_ABSENT)
        )
        assert st.status is (S.PENDING if attempt == 1 else S.RETURNED)
    final = await h.result()
    assert (final.attempt, final.failures) == (2, ["recipient_absent", "recipient_absent"])


async def test_proof_too_far_needs_override(
    workflow_env: WorkflowEnvironment, worker: tuple[Worker, Resources]
) -> None:
    w, _ = worker
    h = await start(workflow_env, w)
    d = driver(DRV)
    await h.execute_update(DeliveryWorkflow.assign, AssignRequest(DISPATCHER, VEH, DRV))
    await h.execute_update(DeliveryWorkflow.pick_up, DriverRequest(d))
    await h.execute_update(DeliveryWorkflow.depart, DriverRequest(d))
    far = type(DROP)(DROP.lat + 0.01, DROP.lon)  # ~1.1 km north
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await h.execute_update(DeliveryWorkflow.deliver, DeliverRequest(d, "Someone", far))
    assert isinstance(info.value.cause, ApplicationError)
    assert info.value.cause.type == "ProofTooFar"
    st = await h.execute_update(
        DeliveryWorkflow.deliver, DeliverRequest(DISPATCHER, "Someone", far, override_distance=True)
    )
    assert st.status is S.DELIVERED
    assert st.proof is not None
    assert st.proof.overridden_by == "dispatcher:u-dispatch"


async def test_cancel_after_pickup_compensates(
    workflow_env: WorkflowEnvironment, worker: tuple[Worker, Resources]
) -> None:
    w, res = worker
    h = await start(workflow_env, w)
    await h.execute_update(DeliveryWorkflow.assign, AssignRequest(DISPATCHER, VEH, DRV))
    await h.execute_update(DeliveryWorkflow.pick_up, DriverRequest(driver(DRV)))
    st = await h.execute_update(DeliveryWorkflow.cancel, CancelRequest(DISPATCHER, "customer changed mind"))
    assert st.status is S.CANCELLED
    events = await res.history.events(uuid.UUID(st.organization_id), uuid.UUID(st.delivery_id))
    assert events[-1].data["compensation"] == ["return_to_depot", "release_capacity"]


async def test_lateness_alert_fires_when_window_passes(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str
) -> None:
    settings = test_settings(database_url=sqlite_url, temporal_task_queue=f"late-{uuid.uuid4().hex[:8]}")
    res = await Resources.open(settings, TemporalConnector(settings, time_skipping_env.client))
    try:
        org = str((await make_tenant(res.sessionmaker)).organization_id)
        async with build_workers(time_skipping_env.client, res, ["default"])[0] as w:
            params = make_input(org, window_hours=2)
            h = await time_skipping_env.client.start_workflow(
                DeliveryWorkflow.run, params, id=f"delivery-{params.delivery_id}", task_queue=w.task_queue
            )
            await h.execute_update(DeliveryWorkflow.assign, AssignRequest(DISPATCHER, VEH, DRV))
            assert not (await h.query(DeliveryWorkflow.state)).late
            await time_skipping_env.sleep(timedelta(hours=2, minutes=1))
            st = await h.query(DeliveryWorkflow.state)
            assert st.late
            await h.execute_update(DeliveryWorkflow.cancel, CancelRequest(DISPATCHER, "test over"))
            await h.result()
        events = await res.history.events(uuid.UUID(params.organization_id), uuid.UUID(params.delivery_id))
        late = [e for e in events if e.type == "late"]
        assert len(late) == 1
        assert late[0].actor == "system:timer"
    finally:
        await res.close()


async def test_signals_predict_lateness_and_mark_arrival(
    workflow_env: WorkflowEnvironment, worker: tuple[Worker, Resources]
) -> None:
    w, res = worker
    h = await start(workflow_env, w, window_hours=2)
    await h.execute_update(DeliveryWorkflow.assign, AssignRequest(DISPATCHER, VEH, DRV))
    await h.execute_update(DeliveryWorkflow.pick_up, DriverRequest(driver(DRV)))
    now = datetime.now(UTC)
    await h.signal(DeliveryWorkflow.eta_changed, EtaSignal(now + timedelta(hours=3)))
    await h.signal(DeliveryWorkflow.eta_changed, EtaSignal(now + timedelta(hours=3, minutes=5)))
    await h.signal(DeliveryWorkflow.arrived, ArrivalSignal(str(uuid.uuid4()), now, DROP))  # another vehicle
    await h.signal(DeliveryWorkflow.arrived, ArrivalSignal(VEH, now, DROP))
    st = await h.execute_update(DeliveryWorkflow.deliver, DeliverRequest(driver(DRV), "R", DROP))
    assert st.status is S.DELIVERED
    assert st.late_predicted
    events = await res.history.events(uuid.UUID(st.organization_id), uuid.UUID(st.delivery_id))
    types = [e.type for e in events]
    assert types.count("late_predicted") == 1  # announced once, not on every ETA update
    assert types[-3:] == ["out_for_delivery", "arrived", "delivered"]
    assert events[-2].actor == "system:geofence"


async def test_unassigned_too_long_alerts_once(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str
) -> None:
    settings = test_settings(database_url=sqlite_url, temporal_task_queue=f"idle-{uuid.uuid4().hex[:8]}")
    res = await Resources.open(settings, TemporalConnector(settings, time_skipping_env.client))
    try:
        org = str((await make_tenant(res.sessionmaker)).organization_id)
        async with build_workers(time_skipping_env.client, res, ["default"])[0] as w:
            params = make_input(org, window_hours=48, options=DeliveryOptions(unassigned_alert_minutes=30))
            h = await time_skipping_env.client.start_workflow(
                DeliveryWorkflow.run, params, id=f"delivery-{params.delivery_id}", task_queue=w.task_queue
            )
            await time_skipping_env.sleep(timedelta(minutes=45))
            assert (await h.query(DeliveryWorkflow.state)).unassigned_alerted
            await time_skipping_env.sleep(timedelta(hours=2))
            await h.execute_update(DeliveryWorkflow.cancel, CancelRequest(DISPATCHER, "test over"))
            await h.result()
        events = await res.history.events(uuid.UUID(org), uuid.UUID(params.delivery_id))
        assert [e.type for e in events].count("unassigned_too_long") == 1
    finally:
        await res.close()


async def test_changes_are_published_and_queued_for_notification(
    workflow_env: WorkflowEnvironment, worker: tuple[Worker, Resources]
) -> None:
    from sqlalchemy import select

    from db.models import NotificationOutbox
    from domain import channels

    w, res = worker
    params = make_input(w.org)  # type: ignore[attr-defined]
    async with res.cache_bus.subscribe(channels.delivery(params.delivery_id)) as messages:
        h = await workflow_env.client.start_workflow(
            DeliveryWorkflow.run, params, id=f"delivery-{params.delivery_id}", task_queue=w.task_queue
        )
        await h.execute_update(DeliveryWorkflow.assign, AssignRequest(DISPATCHER, VEH, DRV))
        await h.execute_update(DeliveryWorkflow.cancel, CancelRequest(DISPATCHER, "no longer needed"))
        seen = []
        async for message in messages:
            seen.append((message.data["sequence"], message.data["event"], message.data["status"]))
            if message.data["event"] == "cancelled":
                break
    assert seen == [(1, "created", "pending"), (2, "assigned", "assigned"), (3, "cancelled", "cancelled")]
    async with res.sessionmaker() as session:
        rows = (
            await session.scalars(
                select(NotificationOutbox)
                .where(NotificationOutbox.delivery_id == uuid.UUID(params.delivery_id))
                .order_by(NotificationOutbox.sequence)
            )
        ).all()
    assert [(r.sequence, r.event) for r in rows] == [(1, "created"), (2, "assigned"), (3, "cancelled")]
