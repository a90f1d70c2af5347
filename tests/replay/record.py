"""Record workflow histories from real runs on the dev server, for the replay tests.

Run after changing a workflow on purpose:  .venv/bin/python -m tests.replay.record
It adds the histories that are missing and keeps the others, which were made by older code and
must go on replaying until no run of that code can still be open (`--force` rewrites them all).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from api.resources import Resources
from db.migrate import upgrade
from db.models import Depot, Vehicle
from domain.delivery import (
    ArrivalSignal,
    AssignRequest,
    CancelRequest,
    DeliverRequest,
    DeliveryState,
    DriverRequest,
    EtaSignal,
    FailRequest,
    FailureReason,
    RescheduleRequest,
    TimeWindow,
)
from domain.health import SystemCheckInput
from domain.reconcile import ReconcileInput
from domain.route_plans import ApplyPlanRequest, DispatchInput, PlanRequest, dispatch_workflow_id
from domain.routes import ResequenceRequest, RouteInput, RouteStop
from domain.search_attributes import KEYWORD_ATTRIBUTES
from domain.workflow_names import plan_workflow_id
from plumbing.converter import DATA_CONVERTER
from plumbing.temporal import TemporalConnector
from tests.integration.workflows.delivery_support import DISPATCHER, DROP, driver, make_input
from tests.support import make_tenant, test_settings
from waybill.temporal_dev import temporal_binary
from workers.compose import build_workers
from workflows.delivery import DeliveryWorkflow
from workflows.dispatch import DispatchWorkflow
from workflows.reconcile import ReconcileWorkflow
from workflows.route import RouteWorkflow
from workflows.route_plan import RoutePlanWorkflow
from workflows.system_check import SystemCheckWorkflow

HISTORIES = Path(__file__).parent / "histories"
Handle = WorkflowHandle[DeliveryWorkflow, DeliveryState]
VEH, DRV = str(uuid.uuid4()), str(uuid.uuid4())


async def happy(h: Handle) -> None:
    d = driver(DRV)
    await h.execute_update(DeliveryWorkflow.assign, AssignRequest(DISPATCHER, VEH, DRV))
    await h.execute_update(DeliveryWorkflow.accept, DriverRequest(d))
    await h.execute_update(DeliveryWorkflow.pick_up, DriverRequest(d, DROP))
    await h.signal(DeliveryWorkflow.eta_changed, EtaSignal(datetime.now(UTC) + timedelta(hours=9)))
    await h.signal(DeliveryWorkflow.arrived, ArrivalSignal(VEH, datetime.now(UTC), DROP))
    await h.execute_update(DeliveryWorkflow.deliver, DeliverRequest(d, "Recipient", DROP))


async def retry_then_return(h: Handle) -> None:
    d = driver(DRV)
    for _ in range(2):
        await h.execute_update(DeliveryWorkflow.assign, AssignRequest(DISPATCHER, VEH, DRV))
        await h.execute_update(DeliveryWorkflow.pick_up, DriverRequest(d))
        await h.execute_update(DeliveryWorkflow.depart, DriverRequest(d))
        await h.execute_update(DeliveryWorkflow.fail, FailRequest(d, FailureReason.RECIPIENT_ABSENT))


async def reschedule_and_cancel(h: Handle) -> None:
    later = datetime.now(UTC) + timedelta(days=1)
    await h.execute_update(
        DeliveryWorkflow.reschedule,
        RescheduleRequest(DISPATCHER, [TimeWindow(later, later + timedelta(hours=1))]),
    )
    await h.execute_update(DeliveryWorkflow.assign, AssignRequest(DISPATCHER, VEH, DRV))
    await h.execute_update(DeliveryWorkflow.pick_up, DriverRequest(driver(DRV)))
    await h.execute_update(DeliveryWorkflow.cancel, CancelRequest(DISPATCHER, "customer cancelled"))


SCENARIOS: dict[str, tuple[Callable[[Handle], Awaitable[None]], int]] = {
    "delivery_happy_path": (happy, 3),
    "delivery_retry_then_return": (retry_then_return, 2),
    "delivery_reschedule_cancel": (reschedule_and_cancel, 3),
}


async def record_route(client: Client, org: str, task_queue: str) -> dict[str, str]:
    """A route with two deliveries linked to it: one delivered, one cancelled (which completes it)."""
    route_id = f"route-{VEH}-record"
    handles = []
    for _ in range(2):
        params = make_input(org)
        handles.append(
            await client.start_workflow(
                DeliveryWorkflow.run, params, id=f"delivery-{params.delivery_id}", task_queue=task_queue
            )
        )
    stops = [
        RouteStop(
            delivery_id=h.id.removeprefix("delivery-"),
            kind="delivery",
            lat=DROP.lat,
            lon=DROP.lon,
            travel_s=300,
        )
        for h in handles
    ]
    route = await client.start_workflow(
        RouteWorkflow.run,
        RouteInput(route_id, org, VEH, "record", DRV, None, datetime.now(UTC), "plan", stops),
        id=route_id,
        task_queue=task_queue,
    )
    for h in handles:
        await h.execute_update(DeliveryWorkflow.assign, AssignRequest(DISPATCHER, VEH, DRV, route_id))
    await route.execute_update(
        RouteWorkflow.resequence, ResequenceRequest("dispatcher:x", [s.key for s in reversed(stops)])
    )
    d = driver(DRV)
    await handles[1].execute_update(DeliveryWorkflow.pick_up, DriverRequest(d, DROP))
    await handles[1].execute_update(DeliveryWorkflow.depart, DriverRequest(d, DROP))
    await handles[1].execute_update(DeliveryWorkflow.deliver, DeliverRequest(d, "Recipient", DROP))
    await handles[0].execute_update(DeliveryWorkflow.cancel, CancelRequest(DISPATCHER, "customer cancelled"))
    await route.result()
    return {
        "route_two_stops": (await route.fetch_history()).to_json(),
        "delivery_on_route": (await handles[1].fetch_history()).to_json(),
    }


async def record_planning(client: Client, resources: Resources, org: str) -> dict[str, str]:
    """A plan applied by hand, then auto-dispatch placing one new delivery until it is stopped."""
    task_queue = resources.settings.temporal_task_queue
    async with resources.sessionmaker() as session:
        depot = Depot(organization_id=uuid.UUID(org), name="Record", lat=DROP.lat, lon=DROP.lon)
        session.add(depot)
        await session.flush()
        for i in range(2):
            session.add(Vehicle(organization_id=uuid.UUID(org), name=f"R{i}", home_depot_id=depot.id))
        await session.commit()
        depot_id = str(depot.id)

    async def delivery() -> str:
        params = make_input(org)
        params = replace(params, spec=replace(params.spec, depot_id=depot_id))
        await client.start_workflow(
            DeliveryWorkflow.run, params, id=f"delivery-{params.delivery_id}", task_queue=task_queue
        )
        return params.delivery_id

    for _ in range(3):
        await delivery()
    await asyncio.sleep(2)  # the projections are written
    plan_id = str(uuid.uuid4())
    request = PlanRequest(
        organization_id=org,
        plan_id=plan_id,
        depot_id=depot_id,
        service_date=None,
        requested_by="recorder",
        time_limit_s=1,
        auto_apply=False,
        routing_task_queue=resources.settings.temporal_routing_task_queue,
    )
    plan = await client.start_workflow(
        RoutePlanWorkflow.run, request, id=plan_workflow_id(plan_id), task_queue=task_queue
    )
    while (await plan.query(RoutePlanWorkflow.state)).status.value == "optimizing":
        await asyncio.sleep(0.2)
    await plan.execute_update(RoutePlanWorkflow.apply, ApplyPlanRequest("recorder"))
    await plan.result()
    dispatch = await client.start_workflow(
        DispatchWorkflow.run,
        DispatchInput(
            org, depot_id, debounce_s=0.5, time_limit_s=1, routing_task_queue=request.routing_task_queue
        ),
        id=dispatch_workflow_id(depot_id),
        task_queue=task_queue,
    )
    await delivery()
    while (await dispatch.query(DispatchWorkflow.state)).batches < 1:
        await asyncio.sleep(0.2)
    await dispatch.signal(DispatchWorkflow.stop)
    await dispatch.result()
    return {
        "route_plan_applied_by_hand": (await plan.fetch_history()).to_json(),
        "dispatch_one_batch": (await dispatch.fetch_history()).to_json(),
    }


async def record_all(client: Client, resources: Resources) -> dict[str, str]:
    out: dict[str, str] = {}
    org = str((await make_tenant(resources.sessionmaker)).organization_id)
    task_queue = resources.settings.temporal_task_queue
    workers = build_workers(client, resources, ["default", "routing"])
    async with workers[0], workers[1]:
        check = await client.start_workflow(
            SystemCheckWorkflow.run,
            SystemCheckInput(requested_by="recorder"),
            id=f"system-check-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        await check.result()
        out["system_check"] = (await check.fetch_history()).to_json()
        out.update(await record_route(client, org, task_queue))
        out.update(await record_planning(client, resources, org))
        for name, (scenario, attempts) in SCENARIOS.items():
            params = make_input(org, max_attempts=attempts)
            handle = await client.start_workflow(
                DeliveryWorkflow.run, params, id=f"delivery-{params.delivery_id}", task_queue=task_queue
            )
            await scenario(handle)
            await handle.result()
            out[name] = (await handle.fetch_history()).to_json()
        reconcile = await client.start_workflow(
            ReconcileWorkflow.run,
            ReconcileInput(requested_by="recorder", organization_id=org, grace_seconds=0),
            id=f"reconcile-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        await reconcile.result()
        out["reconcile"] = (await reconcile.fetch_history()).to_json()
    return out


async def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/replay.db"
        upgrade(url)
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(temporal_binary()),
            search_attributes=[SearchAttributeKey.for_keyword(n) for n in KEYWORD_ATTRIBUTES],
            data_converter=DATA_CONVERTER,  # what every Waybill client and worker uses
        )
        async with env:
            settings = test_settings(database_url=url, data_dir=Path(tmp))
            resources = await Resources.open(settings, TemporalConnector(settings, env.client))
            try:
                histories = await record_all(env.client, resources)
            finally:
                await resources.close()
    HISTORIES.mkdir(exist_ok=True)
    for name, text in histories.items():
        path = HISTORIES / f"{name}.json"
        if path.exists() and "--force" not in sys.argv:
            continue  # keep histories of older code: they must go on replaying
        path.write_text(text)
        sys.stdout.write(f"wrote {HISTORIES / name}.json\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
