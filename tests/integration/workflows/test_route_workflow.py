"""RouteWorkflow with real DeliveryWorkflows: progress moves the route, ETAs reach the deliveries,
re-sequencing and new plans keep started stops in place. Both Temporal servers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.resources import Resources
from domain.delivery import AssignRequest, CancelRequest, DeliverRequest, DeliveryState, DriverRequest
from domain.routes import (
    EtaReport,
    PlanChange,
    ResequenceRequest,
    RouteInput,
    RouteState,
    RouteStop,
    StopStatus,
)
from plumbing.temporal import TemporalConnector
from tests.integration.workflows.delivery_support import DISPATCHER, DROP, driver, make_input
from tests.support import make_tenant, test_settings
from workers.compose import build_workers
from workflows.delivery import DeliveryWorkflow
from workflows.route import RouteWorkflow

VEH, DRV = str(uuid.uuid4()), str(uuid.uuid4())


@pytest.fixture
async def worker(sqlite_url: str, workflow_env: WorkflowEnvironment) -> AsyncIterator[tuple[Worker, str]]:
    settings = test_settings(database_url=sqlite_url, temporal_task_queue=f"rq-{uuid.uuid4().hex[:8]}")
    res = await Resources.open(settings, TemporalConnector(settings, workflow_env.client))
    org = str((await make_tenant(res.sessionmaker)).organization_id)
    async with build_workers(workflow_env.client, res, ["default"])[0] as w:
        yield w, org
    await res.close()


async def eventually(
    handle: WorkflowHandle[RouteWorkflow, RouteState], ok: Callable[[RouteState], bool]
) -> RouteState:
    for _ in range(100):
        st = await handle.query(RouteWorkflow.state)
        if ok(st):
            return st
        await asyncio.sleep(0.1)
    raise AssertionError(f"route never reached the expected state: {st}")


async def test_progress_etas_resequence_and_replan(
    workflow_env: WorkflowEnvironment, worker: tuple[Worker, str]
) -> None:
    w, org = worker
    client = workflow_env.client
    now = datetime.now(UTC)
    route_id = f"route-{VEH}-{uuid.uuid4().hex[:6]}"
    deliveries: list[str] = []
    for _ in range(3):
        params = make_input(org, now=now)
        await client.start_workflow(
            DeliveryWorkflow.run, params, id=f"delivery-{params.delivery_id}", task_queue=w.task_queue
        )
        deliveries.append(params.delivery_id)
    stops = [
        RouteStop(delivery_id=d, kind="delivery", lat=DROP.lat, lon=DROP.lon, service_s=120, travel_s=600)
        for d in deliveries
    ]
    route = await client.start_workflow(
        RouteWorkflow.run,
        RouteInput(
            route_id=route_id,
            organization_id=org,
            vehicle_id=VEH,
            shift="2026-11-28",
            driver_id=DRV,
            depot_id=None,
            start_at=now,
            plan_id="p1",
            stops=stops,
        ),
        id=route_id,
        task_queue=w.task_queue,
    )
    for d in deliveries:
        handle = client.get_workflow_handle_for(DeliveryWorkflow.run, f"delivery-{d}")
        await handle.execute_update(
            DeliveryWorkflow.assign,
            AssignRequest(actor=DISPATCHER, vehicle_id=VEH, driver_id=DRV, route_id=route_id),
        )

    # ETAs are estimated for every stop, in order, and each delivery hears its own.
    st = await eventually(route, lambda s: all(x.eta for x in s.stops))
    etas = [x.eta for x in st.stops]
    assert etas == sorted(etas)
    first = client.get_workflow_handle_for(DeliveryWorkflow.run, f"delivery-{deliveries[0]}")
    for _ in range(100):
        if (await first.query(DeliveryWorkflow.state)).eta is not None:
            break
        await asyncio.sleep(0.1)
    told = await first.query(DeliveryWorkflow.state)
    assert told.eta == st.stops[0].eta
    assert told.eta_notified == told.eta  # the first ETA of an assigned delivery is worth telling

    # Live tracking reports a later ETA for the next stop: it and the stops after it move.
    tracked = etas[0] + timedelta(minutes=30)  # type: ignore[operator]
    await route.signal(RouteWorkflow.report_eta, EtaReport(st.stops[0].key, tracked, datetime.now(UTC)))
    moved = await eventually(route, lambda s: s.stops[0].eta == tracked)
    assert moved.stops[1].eta == tracked + timedelta(seconds=120 + 600)
    for _ in range(100):  # 30 minutes later than last told: beyond the 15-minute notice threshold
        if (await first.query(DeliveryWorkflow.state)).eta_notified == tracked:
            break
        await asyncio.sleep(0.1)
    assert (await first.query(DeliveryWorkflow.state)).eta_notified == tracked

    # The driver delivers the first stop: the route is under way and its next stop is the second.
    me = driver(DRV)
    for update in (DeliveryWorkflow.pick_up, DeliveryWorkflow.depart):
        await first.execute_update(update, DriverRequest(actor=me))
    done: DeliveryState = await first.execute_update(
        DeliveryWorkflow.deliver, DeliverRequest(actor=me, recipient_name="R", position=DROP)
    )
    assert done.route_id == route_id
    st = await eventually(route, lambda s: s.stops[0].status is StopStatus.DONE)
    assert st.status.value == "in_progress"
    assert st.next_stop is not None
    assert st.next_stop.delivery_id == deliveries[1]

    # Re-sequencing may reorder planned stops only.
    order = [f"{deliveries[2]}:delivery", f"{deliveries[1]}:delivery"]
    st = await route.execute_update(
        RouteWorkflow.resequence, ResequenceRequest(actor="dispatcher:x", order=order)
    )
    assert [s.delivery_id for s in st.stops] == [deliveries[0], deliveries[2], deliveries[1]]
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await route.execute_update(
            RouteWorkflow.resequence,
            ResequenceRequest(actor="dispatcher:x", order=[f"{deliveries[0]}:delivery", *order]),
        )
    assert isinstance(err.value.cause, ApplicationError)
    assert err.value.cause.type == "InvalidSequence"

    # A new plan replaces the planned stops; the finished one keeps its place.
    st = await route.execute_update(RouteWorkflow.set_plan, PlanChange(plan_id="p2", stops=[stops[1]]))
    assert [(s.delivery_id, s.status) for s in st.stops] == [
        (deliveries[0], StopStatus.DONE),
        (deliveries[1], StopStatus.PLANNED),
    ]
    assert st.plan_id == "p2"

    # Cancelling the last open delivery drops its stop, which completes the route.
    last = client.get_workflow_handle_for(DeliveryWorkflow.run, f"delivery-{deliveries[1]}")
    await last.execute_update(
        DeliveryWorkflow.cancel, CancelRequest(actor=DISPATCHER, reason="customer called")
    )
    final = await route.result()
    assert [s.status for s in final.stops] == [StopStatus.DONE, StopStatus.DROPPED]
    assert final.status.value == "completed"
    assert final.estimated_end is not None
    assert final.estimated_end >= now - timedelta(seconds=1)
