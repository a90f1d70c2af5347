"""Deliveries when parts fail: creates that stopped half-way, a worker that is not running, Temporal
out of reach, retried actions, and references to another organization (issue 17, defects 1-4).

Each API here is a real server on loopback over the session's database; the "no worker" one has a
task queue nobody polls, the "Temporal stopped" one a client whose own dev server was shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.resources import Resources
from api.schemas.deliveries import DeliveryCreate, to_spec
from api.services.deliveries import _row_values
from db.models import DeliveryRow
from domain.delivery import DeliveryState, DeliveryStatus
from domain.ids import uuid7
from domain.reconcile import delivery_workflow_id
from domain.roles import Role
from plumbing.converter import DATA_CONVERTER
from plumbing.temporal import TemporalConnector
from tests.integration.api.conftest import Fleet, LoginFn
from tests.integration.api.test_deliveries import body
from tests.support import PASSWORD, free_port, make_tenant, test_settings
from waybill.services import ApiService
from waybill.temporal_dev import temporal_binary
from workers.compose import build_workers

WAIT = 1.0  # WAYBILL_ACTION_WAIT_SECONDS of the APIs below


@contextlib.asynccontextmanager
async def serve(resources: Resources) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    service = ApiService(resources, "127.0.0.1", port)
    await service.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=40) as http:
            yield http
    finally:
        await service.stop()


@pytest.fixture(scope="module")
async def no_worker_resources(
    database_url: str, dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Resources]:
    """An API whose delivery task queue no worker polls (the worker was killed), a small pool."""
    settings = test_settings(
        database_url=database_url,
        access_token_ttl_seconds=600,
        temporal_task_queue=f"no-worker-{uuid.uuid4().hex[:8]}",
        action_wait_seconds=WAIT,
        db_pool_size=2,
        data_dir=tmp_path_factory.mktemp("no-worker"),
    )
    resources = await Resources.open(settings, TemporalConnector(settings, dev_env.client))
    yield resources
    await resources.close()


@pytest.fixture(scope="module")
async def stopped_temporal_resources(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Resources]:
    """An API whose Temporal server was stopped after its client connected."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), data_converter=DATA_CONVERTER
    )
    settings = test_settings(
        database_url=database_url,
        access_token_ttl_seconds=600,
        temporal_task_queue=f"stopped-{uuid.uuid4().hex[:8]}",
        action_wait_seconds=WAIT,
        data_dir=tmp_path_factory.mktemp("stopped"),
    )
    resources = await Resources.open(settings, TemporalConnector(settings, env.client))
    await env.shutdown()
    yield resources
    await resources.close()


async def login_as(http: httpx.AsyncClient, fleet: Fleet, role: Role) -> dict[str, str]:
    r = await http.post("/api/v1/auth/login", json={"email": fleet.tenant.emails[role], "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def workflow_exists(env: WorkflowEnvironment, delivery_id: str) -> bool:
    try:
        await env.client.get_workflow_handle(delivery_workflow_id(str(delivery_id))).describe()
        return True
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return False
        raise


async def row_without_workflow(
    sessionmaker: async_sessionmaker[AsyncSession], fleet: Fleet, payload: dict[str, Any]
) -> uuid.UUID:
    """The row a create writes before it starts the workflow, as an API killed in between leaves it."""
    spec = to_spec(DeliveryCreate.model_validate(payload))
    did, now = uuid7(), datetime.now(UTC)
    state = DeliveryState(
        delivery_id=str(did),
        organization_id=str(fleet.tenant.organization_id),
        status=DeliveryStatus.PENDING,
        spec=spec,
        created_at=now,
        updated_at=now,
        pending_since=now,
    )
    async with sessionmaker() as session:
        session.add(DeliveryRow(**_row_values(state, fleet.tenant.organization_id, now)))
        await session.commit()
    return did


# Defect 1: a replayed create answers with a delivery that can never move -------------------------


async def test_create_retried_after_temporal_was_down_starts_its_workflow(
    http: httpx.AsyncClient,
    fleet: Fleet,
    dev_env: WorkflowEnvironment,
    stopped_temporal_resources: Resources,
) -> None:
    payload = body(external_ref=f"ORD-{uuid.uuid4().hex[:8]}")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    async with serve(stopped_temporal_resources) as down:
        headers = await login_as(down, fleet, Role.DISPATCHER)
        failed = await down.post("/api/v1/deliveries", headers={**headers, **key}, json=payload)
    assert failed.status_code == 503, failed.text
    assert failed.json()["code"] == "temporal_unavailable"
    assert failed.headers["retry-after"]

    retried = await http.post("/api/v1/deliveries", headers={**fleet.dispatcher, **key}, json=payload)
    assert retried.status_code == 200, retried.text
    did = retried.json()["id"]
    assert await workflow_exists(dev_env, did), "the replayed create answered without a workflow"
    consistent = await http.get(f"/api/v1/deliveries/{did}?consistent=true", headers=fleet.dispatcher)
    assert consistent.status_code == 200, consistent.text
    assigned = await http.post(
        f"/api/v1/deliveries/{did}/assign", headers=fleet.dispatcher, json={"vehicle_id": fleet.vehicle_id}
    )
    assert assigned.status_code == 200, assigned.text


async def test_create_by_external_ref_after_a_killed_request_starts_its_workflow(
    http: httpx.AsyncClient,
    fleet: Fleet,
    dev_env: WorkflowEnvironment,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """An API killed between its row and its workflow start leaves the row alone (sequence 0)."""
    payload = body(external_ref=f"ORD-{uuid.uuid4().hex[:8]}")
    did = await row_without_workflow(sessionmaker, fleet, payload)
    assert not await workflow_exists(dev_env, str(did))

    again = await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=payload)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == str(did)
    assert await workflow_exists(dev_env, str(did)), "the create found the row and left it without workflow"


async def test_action_on_a_never_started_delivery_starts_it_first(
    http: httpx.AsyncClient,
    fleet: Fleet,
    dev_env: WorkflowEnvironment,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A row without a workflow (no key, no external_ref: nothing finds it again) still takes actions."""
    did = await row_without_workflow(sessionmaker, fleet, body())
    assigned = await http.post(
        f"/api/v1/deliveries/{did}/assign", headers=fleet.dispatcher, json={"vehicle_id": fleet.vehicle_id}
    )
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["status"] == "assigned"
    assert await workflow_exists(dev_env, str(did))


# Defect 2: a dead worker takes the whole API down -----------------------------------------------


async def test_actions_without_a_worker_answer_202_and_leave_the_pool_free(
    fleet: Fleet, dev_env: WorkflowEnvironment, no_worker_resources: Resources
) -> None:
    async with serve(no_worker_resources) as api:
        headers = await login_as(api, fleet, Role.DISPATCHER)
        ids = []
        for _ in range(3):
            r = await api.post("/api/v1/deliveries", headers=headers, json=body())
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        # Many more waiting actions than the pool has connections (2 + 2 overflow on PostgreSQL).
        keys = [uuid.uuid4().hex for _ in range(12)]
        started = time.monotonic()
        actions = asyncio.gather(
            *(
                api.post(
                    f"/api/v1/deliveries/{ids[i % 3]}/cancel",
                    headers={**headers, "Idempotency-Key": key},
                    json={"reason": "customer called"},
                )
                for i, key in enumerate(keys)
            )
        )
        await asyncio.sleep(0.3)  # the actions are waiting on Temporal now
        listed = await api.get("/api/v1/deliveries", headers=headers)
        listed_after = time.monotonic() - started
        created = await api.post("/api/v1/deliveries", headers=headers, json=body())
        answers = await actions
        assert listed.status_code == 200, listed.text
        assert created.status_code == 201, created.text
        assert listed_after < WAIT + 3, f"a read waited {listed_after:.1f}s behind actions holding the pool"
        for r in answers:
            assert r.status_code == 202, r.text
            problem = r.json()
            assert problem["code"] == "action_pending"
            assert r.headers["location"] == problem["location"]
            assert problem["location"].endswith(f"/actions/{problem['action_id']}")

        # The worker comes back: each pending action applies, once, and its Location tells.
        workers = build_workers(dev_env.client, no_worker_resources)
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            first = answers[0].json()
            outcome = await poll(api, headers, first["location"])
            assert outcome["status"] == "cancelled"
            # The same key again: the first outcome, not a 409 for cancelling a cancelled delivery.
            again = await api.post(
                f"/api/v1/deliveries/{ids[0]}/cancel",
                headers={**headers, "Idempotency-Key": keys[0]},
                json={"reason": "customer called"},
            )
            assert again.status_code == 200, again.text
            assert again.json()["status"] == "cancelled"
            other = await api.post(
                f"/api/v1/deliveries/{ids[0]}/cancel",
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                json={"reason": "customer called"},
            )
            assert other.status_code == 409, other.text
            for did in ids:
                events = await api.get(f"/api/v1/deliveries/{did}/events", headers=headers)
                kinds = [e["type"] for e in events.json()]
                assert kinds.count("cancelled") == 1, kinds


async def poll(api: httpx.AsyncClient, headers: dict[str, str], location: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = await api.get(location, headers=headers)
        if r.status_code == 200:
            result: dict[str, Any] = r.json()
            return result
        assert r.status_code == 202, r.text
    raise AssertionError(f"{location} still pending after 60 s")


async def test_unknown_action_id_is_404(http: httpx.AsyncClient, fleet: Fleet) -> None:
    r = await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=body())
    did = r.json()["id"]
    unknown = await http.get(f"/api/v1/deliveries/{did}/actions/assign-{'0' * 32}", headers=fleet.dispatcher)
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["code"] == "action_not_found"


# Defect 3: Temporal out of reach answered 500 ----------------------------------------------------


async def test_temporal_stopped_answers_503_with_retry_after(
    http: httpx.AsyncClient, fleet: Fleet, stopped_temporal_resources: Resources
) -> None:
    r = await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=body())
    did = r.json()["id"]
    async with serve(stopped_temporal_resources) as down:
        headers = await login_as(down, fleet, Role.DISPATCHER)
        listed = await down.get("/api/v1/deliveries", headers=headers)
        assert listed.status_code == 200, "reads of the projection keep working"
        for answer in (
            await down.post(
                f"/api/v1/deliveries/{did}/assign", headers=headers, json={"vehicle_id": fleet.vehicle_id}
            ),
            await down.get(f"/api/v1/deliveries/{did}?consistent=true", headers=headers),
            await down.post("/api/v1/deliveries", headers=headers, json=body()),
        ):
            assert answer.status_code == 503, answer.text
            assert answer.json()["code"] == "temporal_unavailable"
            assert int(answer.headers["retry-after"]) > 0


# Defect 4: references to another organization ---------------------------------------------------


async def test_depot_of_another_organization_is_refused(
    http: httpx.AsyncClient,
    fleet: Fleet,
    login: LoginFn,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    other = await make_tenant(sessionmaker)
    other_admin = await login(other, Role.ADMIN)
    depot = await http.post(
        "/api/v1/depots",
        headers=other_admin,
        json={"name": "Theirs", "location": {"lat": 52.5, "lon": 13.4}},
    )
    assert depot.status_code == 201, depot.text
    for depot_id in (depot.json()["id"], str(uuid.uuid4())):
        r = await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=body(depot_id=depot_id))
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "invalid_reference"
        batch = await http.post(
            "/api/v1/deliveries:batch", headers=fleet.dispatcher, json={"items": [body(depot_id=depot_id)]}
        )
        assert batch.json()["rejected"] == 1, batch.text
    async with sessionmaker() as session:
        states = await session.scalars(
            select(DeliveryRow.state).where(DeliveryRow.organization_id == fleet.tenant.organization_id)
        )
        assert depot.json()["id"] not in {s["spec"].get("depot_id") for s in states}


# The database down: retryable 503, not 500 ------------------------------------------------------


async def test_database_down_answers_503(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = test_settings(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere",
        data_dir=tmp_path_factory.mktemp("db-down"),
    )
    resources = await Resources.open(settings, TemporalConnector(settings, dev_env.client))
    try:
        async with serve(resources) as api:
            r = await api.post("/api/v1/auth/login", json={"email": "a@b.test", "password": "x" * 12})
    finally:
        await resources.close()
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "database_unavailable"
    assert int(r.headers["retry-after"]) > 0
