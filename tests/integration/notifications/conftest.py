"""An API server and workers whose settings point at real local receivers: SMTP (aiosmtpd) and an
HTTP server standing in for the SMS provider and the webhook endpoints."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.resources import Resources
from domain.roles import Role
from plumbing.temporal import TemporalConnector
from tests.integration.notifications.receivers import HttpReceiver, SmtpServer
from tests.support import PASSWORD, Tenant, free_port, make_tenant, test_settings
from waybill.services import ApiService
from workers.compose import build_workers

SMS_PATH = "/sms"
SMS_TOKEN = "sms-token-123"


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver()
    r.start()
    yield r
    r.stop()


@pytest.fixture(scope="session")
async def notify_resources(
    database_url: str,
    dev_env: WorkflowEnvironment,
    smtp: SmtpServer,
    receiver: HttpReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Resources]:
    settings = test_settings(
        database_url=database_url,
        temporal_task_queue=f"notify-{uuid.uuid4().hex[:8]}",
        temporal_routing_task_queue=f"notify-routing-{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path_factory.mktemp("notify-data"),
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        sms_provider_url=receiver.url(SMS_PATH),
        sms_provider_token=SMS_TOKEN,
        tracking_url_template="https://track.example.test/{delivery_id}",
        webhook_retry_initial_seconds=0.2,
        webhook_retry_max_interval_seconds=0.5,
        webhook_timeout_seconds=2,
        webhook_disable_after_seconds=2,
        # The receivers listen on loopback, which the webhook egress policy refuses unless named.
        webhook_allowed_hosts=["127.0.0.1"],
    )
    resources = await Resources.open(settings, TemporalConnector(settings, dev_env.client))
    async with contextlib.AsyncExitStack() as stack:
        for worker in build_workers(dev_env.client, resources, ["default"]):
            await stack.enter_async_context(worker)
        yield resources
    await resources.close()


@pytest.fixture(scope="session")
async def notify_api(notify_resources: Resources) -> AsyncIterator[str]:
    port = free_port()
    service = ApiService(notify_resources, "127.0.0.1", port)
    await service.start()
    yield f"http://127.0.0.1:{port}"
    await service.stop()


@pytest.fixture
async def http(notify_api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=notify_api, timeout=15) as client:
        yield client


class Org:
    """A tenant with a vehicle, its driver, and a logged-in header per role."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.headers: dict[Role, dict[str, str]] = {}
        self.vehicle_id = ""
        self.driver_id = ""

    @property
    def admin(self) -> dict[str, str]:
        return self.headers[Role.ADMIN]

    @property
    def dispatcher(self) -> dict[str, str]:
        return self.headers[Role.DISPATCHER]

    @property
    def driver(self) -> dict[str, str]:
        return self.headers[Role.DRIVER]


@pytest.fixture
async def org(http: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]) -> Org:
    o = Org(await make_tenant(sessionmaker))
    for role in (Role.ADMIN, Role.DISPATCHER, Role.DRIVER):
        r = await http.post("/api/v1/auth/login", json={"email": o.tenant.emails[role], "password": PASSWORD})
        assert r.status_code == 200, r.text
        o.headers[role] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    v = await http.post("/api/v1/vehicles", headers=o.dispatcher, json={"name": "Van 1"})
    o.vehicle_id = v.json()["id"]
    d = await http.post(
        "/api/v1/drivers",
        headers=o.dispatcher,
        json={"name": "Dario", "user_id": str(o.tenant.user_ids[Role.DRIVER]), "vehicle_id": o.vehicle_id},
    )
    o.driver_id = d.json()["id"]
    return o
