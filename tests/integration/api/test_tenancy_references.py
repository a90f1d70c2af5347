"""Ids a caller sends in a body must name rows of the caller's organization (issue 17, defect 4).

Another organization's id answers exactly like one that exists nowhere: 422 `invalid_reference`,
the same body but for the id itself, so a caller cannot probe other tenants' ids. Lists of ids are
checked in one query and every bad one is named. The workflows do not rely on the API's checks:
a depot's auto-dispatch ignores deliveries of another organization even if one names its depot.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.resources import Resources
from db.models import Depot, RoutePlanRow, RouteRow, Vehicle
from db.repositories.analytics import routes_of_shift
from domain.ids import uuid7
from domain.reconcile import delivery_workflow_id
from domain.roles import Role
from tests.integration.api.conftest import LoginFn
from tests.integration.api.test_auth import assert_problem
from tests.integration.api.test_deliveries import body as delivery_body
from tests.integration.workflows.delivery_support import make_input
from tests.support import Tenant, make_tenant
from workflows.delivery import DeliveryWorkflow

DEPOT = {"name": "Home", "location": {"lat": 52.5, "lon": 13.4}, "timezone": "UTC"}


@dataclass
class Side:
    """One organization's dispatcher and one row of each kind a body can name."""

    headers: dict[str, str]
    depot_id: str
    vehicle_id: str
    driver_id: str
    driver_user_id: str
    delivery_id: str


async def _side(http: httpx.AsyncClient, tenant: Tenant, login: LoginFn, tag: str) -> Side:
    headers = await login(tenant, Role.DISPATCHER)

    async def post(path: str, payload: dict[str, Any]) -> str:
        r = await http.post(path, headers=headers, json=payload)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    depot_id = await post("/api/v1/depots", {**DEPOT, "name": f"Depot {tag}"})
    vehicle_id = await post("/api/v1/vehicles", {"name": f"Van {tag}", "home_depot_id": depot_id})
    driver_id = await post("/api/v1/drivers", {"name": f"Driver {tag}"})
    delivery_id = await post("/api/v1/deliveries", delivery_body())
    return Side(headers, depot_id, vehicle_id, driver_id, str(tenant.user_ids[Role.DRIVER]), delivery_id)


@pytest.fixture
async def sides(
    http: httpx.AsyncClient, tenant: Tenant, login: LoginFn, sessionmaker: async_sessionmaker[AsyncSession]
) -> tuple[Side, Side]:
    """(mine, theirs): two organizations with the same kinds of rows."""
    other = await make_tenant(sessionmaker)
    return await _side(http, tenant, login, "mine"), await _side(http, other, login, "theirs")


def _masked(r: httpx.Response, ident: str) -> dict[str, Any]:
    """The problem body with the probed id replaced, to compare two answers but for the id."""
    masked: dict[str, Any] = json.loads(r.text.replace(ident, "<id>"))
    return masked


# (method, path, body, kind of the row the body names); `{ref}` is the probed id, `{...}` mine.
BODY_REFERENCES = [
    ("POST", "/api/v1/vehicles", {"name": "Probe", "home_depot_id": "{ref}"}, "depot_id"),
    ("PATCH", "/api/v1/vehicles/{vehicle_id}", {"home_depot_id": "{ref}"}, "depot_id"),
    ("POST", "/api/v1/drivers", {"name": "Probe", "vehicle_id": "{ref}"}, "vehicle_id"),
    ("POST", "/api/v1/drivers", {"name": "Probe", "user_id": "{ref}"}, "driver_user_id"),
    ("PATCH", "/api/v1/drivers/{driver_id}", {"vehicle_id": "{ref}"}, "vehicle_id"),
    ("PATCH", "/api/v1/drivers/{driver_id}", {"user_id": "{ref}"}, "driver_user_id"),
    ("POST", "/api/v1/route-plans", {"depot_id": "{ref}"}, "depot_id"),
    ("POST", "/api/v1/route-plans", {"depot_id": "{depot_id}", "delivery_ids": ["{ref}"]}, "delivery_id"),
    ("POST", "/api/v1/route-plans", {"depot_id": "{depot_id}", "vehicle_ids": ["{ref}"]}, "vehicle_id"),
]


def _fill(template: Any, mine: Side, ref: str) -> Any:
    if isinstance(template, str):
        return template.format(ref=ref, **vars(mine))
    if isinstance(template, list):
        return [_fill(t, mine, ref) for t in template]
    return {k: _fill(v, mine, ref) for k, v in template.items()}


async def test_every_body_reference_refuses_another_organizations_id_like_an_unknown_one(
    http: httpx.AsyncClient, sides: tuple[Side, Side]
) -> None:
    """Guards every body field that names another row (most were checked already; the route
    plan's id lists were not, see the test below)."""
    mine, theirs = sides
    wrong: list[str] = []
    for method, path, template, kind in BODY_REFERENCES:
        foreign, unknown = getattr(theirs, kind), str(uuid.uuid4())
        answers = []
        for ref in (foreign, unknown):
            r = await http.request(
                method, _fill(path, mine, ref), headers=mine.headers, json=_fill(template, mine, ref)
            )
            if r.status_code != 422 or r.json().get("code") != "invalid_reference":
                wrong.append(f"{method} {path} {template} with {ref}: {r.status_code} {r.text[:200]}")
            answers.append(_masked(r, ref))
        if answers[0] != answers[1]:
            wrong.append(f"{method} {path} {template}: foreign {answers[0]} != unknown {answers[1]}")
    assert not wrong, "\n".join(wrong)
    # Nothing was written by the refused requests.
    vehicle = (await http.get(f"/api/v1/vehicles/{mine.vehicle_id}", headers=mine.headers)).json()
    driver = (await http.get(f"/api/v1/drivers/{mine.driver_id}", headers=mine.headers)).json()
    assert vehicle["home_depot_id"] == mine.depot_id
    assert (driver["vehicle_id"], driver["user_id"]) == (None, None)
    plans = (await http.get("/api/v1/route-plans", headers=mine.headers)).json()
    assert plans["items"] == []


@pytest.mark.parametrize(("field", "kind"), [("delivery_ids", "delivery_id"), ("vehicle_ids", "vehicle_id")])
async def test_route_plan_names_every_foreign_or_unknown_id_of_its_lists(
    http: httpx.AsyncClient, sides: tuple[Side, Side], field: str, kind: str
) -> None:
    """Before: another organization's (or no) delivery or vehicle was accepted and the plan was
    started with it (the optimizer's load left it out silently)."""
    mine, theirs = sides
    unknown = str(uuid.uuid4())
    ids = [getattr(mine, kind), getattr(theirs, kind), unknown, getattr(theirs, kind)]
    r = await http.post(
        "/api/v1/route-plans", headers=mine.headers, json={"depot_id": mine.depot_id, field: ids}
    )
    problem = assert_problem(r, 422, "invalid_reference")
    errors = problem["errors"]
    assert isinstance(errors, list)
    # Each bad id once, where it first appears; the caller's own id is not named.
    assert [e["location"] for e in errors] == [["body", field, 1], ["body", field, 2]]
    detail = str(problem["detail"])
    assert getattr(theirs, kind) in detail
    assert unknown in detail
    assert getattr(mine, kind) not in detail
    plans = (await http.get("/api/v1/route-plans", headers=mine.headers)).json()
    assert plans["items"] == []
    # The caller's own ids still plan.
    ok = await http.post(
        "/api/v1/route-plans",
        headers=mine.headers,
        json={"depot_id": mine.depot_id, field: [getattr(mine, kind)], "auto_apply": False},
    )
    assert ok.status_code == 202, ok.text


async def _signalled(handle: WorkflowHandle[Any, Any], timeout: float = 30) -> None:
    """Wait until the workflow's signal to another workflow has been delivered."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED:
                return
        assert asyncio.get_running_loop().time() < deadline, f"{handle.id} signalled nothing"
        await asyncio.sleep(0.2)


async def _pending_once(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], delivery_id: str, timeout: float = 30
) -> list[str]:
    """The dispatch's pending deliveries once `delivery_id` (signalled last) is among them."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await http.get(url, headers=headers)
        assert r.status_code == 200, r.text
        pending: list[str] = r.json()["pending"]
        if delivery_id in pending:
            return pending
        assert asyncio.get_running_loop().time() < deadline, f"{delivery_id} never pending: {pending}"
        await asyncio.sleep(0.2)


async def test_auto_dispatch_ignores_a_delivery_of_another_organization_naming_its_depot(
    http: httpx.AsyncClient,
    tenant: Tenant,
    login: LoginFn,
    sessionmaker: async_sessionmaker[AsyncSession],
    api_resources: Resources,
    dev_env: WorkflowEnvironment,
) -> None:
    """Defence in depth: whatever let such a delivery be created (defect 4 was POST /deliveries),
    the depot's DispatchWorkflow must not take it in. Before: its notice was queued like the
    organization's own and listed in `pending` to the depot's organization."""
    mine = await login(tenant, Role.DISPATCHER)
    depot = await http.post("/api/v1/depots", headers=mine, json=DEPOT)
    assert depot.status_code == 201, depot.text
    depot_id = depot.json()["id"]
    url = f"/api/v1/depots/{depot_id}/dispatch"
    # A long debounce: the notices stay pending, no plan runs.
    on = await http.put(url, headers=mine, json={"debounce_seconds": 3600})
    assert on.status_code == 200, on.text
    other = await make_tenant(sessionmaker)
    handles = []
    try:
        # Started straight on Temporal, past the API's checks, as the API starts a delivery.
        for org in (other.organization_id, tenant.organization_id):
            inp = make_input(str(org))
            inp = replace(inp, spec=replace(inp.spec, depot_id=depot_id))
            handles.append(
                await dev_env.client.start_workflow(
                    DeliveryWorkflow.run,
                    inp,
                    id=delivery_workflow_id(inp.delivery_id),
                    task_queue=api_resources.settings.temporal_task_queue,
                )
            )
        for handle in handles:
            await _signalled(handle)
        theirs_id, own_id = (h.id.removeprefix("delivery-") for h in handles)
        pending = await _pending_once(http, url, mine, own_id)
        assert pending == [own_id], f"{theirs_id} is another organization's"
    finally:
        for handle in handles:
            await handle.terminate("test over")
        assert (await http.delete(url, headers=mine)).status_code == 200


async def test_daily_report_reads_plans_of_its_own_organization_only(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Defence in depth in the analytics activity: a route naming another organization's plan
    (which no workflow writes) gets no planned distance from it. Before: the plan was read by id."""
    mine, theirs = await make_tenant(sessionmaker), await make_tenant(sessionmaker)
    shift = "2026-01-14"
    async with sessionmaker() as s:
        depot = Depot(organization_id=theirs.organization_id, name="Theirs", lat=52.5, lon=13.4)
        vehicle = Vehicle(organization_id=mine.organization_id, name="Van")
        s.add_all([depot, vehicle])
        await s.flush()
        plan = RoutePlanRow(
            id=uuid7(),
            organization_id=theirs.organization_id,
            depot_id=depot.id,
            status="applied",
            requested_by="test",
            state={"plan": {"routes": [{"vehicle_id": str(vehicle.id), "distance_m": 1234}]}},
        )
        s.add(plan)
        s.add(
            RouteRow(
                id=f"route-{vehicle.id}-{shift}",
                organization_id=mine.organization_id,
                vehicle_id=vehicle.id,
                shift=shift,
                plan_id=str(plan.id),
                status="completed",
                start_at=datetime.now(UTC),
                state={"route_id": f"route-{vehicle.id}-{shift}"},
            )
        )
        await s.commit()
    async with sessionmaker() as s:
        (route,) = await routes_of_shift(s, mine.organization_id, shift)
    assert route["planned_distance_m"] is None
