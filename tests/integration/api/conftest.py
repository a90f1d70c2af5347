"""A real API server on a loopback port, over each SQL backend, with the Temporal dev server behind it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.resources import Resources
from domain.roles import Role
from plumbing.temporal import TemporalConnector
from tests.support import PASSWORD, Tenant, free_port, make_tenant, test_settings
from waybill.services import ApiService
from workers.compose import build_workers


@pytest.fixture(scope="session")
async def api_resources(
    database_url: str, dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Resources]:
    settings = test_settings(
        database_url=database_url,
        access_token_ttl_seconds=600,  # long enough for the slowest test on a loaded machine
        temporal_task_queue=f"api-{uuid.uuid4().hex[:8]}",
        temporal_routing_task_queue=f"api-routing-{uuid.uuid4().hex[:8]}",
        temporal_analytics_task_queue=f"api-analytics-{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path_factory.mktemp("api-data"),
        webhook_allowed_hosts=["127.0.0.1"],  # test_log_secrets' webhook fails on loopback
    )
    resources = await Resources.open(settings, TemporalConnector(settings, dev_env.client))
    # Workers on this backend's own task queues: workflows started through the API run here.
    workers = build_workers(dev_env.client, resources)
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        yield resources
    await resources.close()


@pytest.fixture(scope="session")
async def api_url(api_resources: Resources) -> AsyncIterator[str]:
    port = free_port()
    service = ApiService(api_resources, "127.0.0.1", port)
    await service.start()
    yield f"http://127.0.0.1:{port}"
    await service.stop()


@pytest.fixture
async def http(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        yield client


@pytest.fixture
async def tenant(sessionmaker: async_sessionmaker[AsyncSession]) -> Tenant:
    return await make_tenant(sessionmaker)


LoginFn = Callable[[Tenant, Role], Awaitable[dict[str, str]]]


@pytest.fixture
def login(http: httpx.AsyncClient) -> LoginFn:
    """Log in as the tenant's user with `role`; returns the Authorization header."""

    async def _login(tenant: Tenant, role: Role) -> dict[str, str]:
        r = await http.post("/api/v1/auth/login", json={"email": tenant.emails[role], "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    return _login


class Fleet:
    """A tenant with a vehicle and its driver, and the headers to act as each role."""

    def __init__(self, tenant: Tenant, dispatcher: dict[str, str], driver: dict[str, str]) -> None:
        self.tenant, self.dispatcher, self.driver = tenant, dispatcher, driver
        self.vehicle_id = ""
        self.driver_id = ""


@pytest.fixture
async def fleet(http: httpx.AsyncClient, tenant: Tenant, login: LoginFn) -> Fleet:
    f = Fleet(tenant, await login(tenant, Role.DISPATCHER), await login(tenant, Role.DRIVER))
    v = await http.post("/api/v1/vehicles", headers=f.dispatcher, json={"name": "Van 1"})
    f.vehicle_id = v.json()["id"]
    d = await http.post(
        "/api/v1/drivers",
        headers=f.dispatcher,
        json={"name": "Dario", "user_id": str(tenant.user_ids[Role.DRIVER]), "vehicle_id": f.vehicle_id},
    )
    f.driver_id = d.json()["id"]
    return f
