"""Webhooks cannot be aimed at Waybill's own network (server-side request forgery): a forbidden URL
is refused at registration (422 webhook_url_forbidden) and again at delivery, after resolution,
before any connection, as one permanent failure rather than endless retries; a name is resolved
once and the connection goes to the address that was checked; redirects are not followed.

No test sends traffic to a forbidden address: the "forbidden" receivers are traps on loopback
(127.0.0.2) that count connections, and names resolve through a fake resolver (DNS is not local).
The allowlist (127.0.0.1 in the notification fixtures) lets the real receivers through."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from activities.notifications import egress
from activities.notifications.webhooks import attempt_webhook
from api.resources import Resources
from db.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from domain.roles import Role
from plumbing.settings import Environment, Settings
from plumbing.temporal import TemporalConnector
from tests.integration.notifications.conftest import Org
from tests.integration.notifications.helpers import delivery_body, notifications_done, post, unique_path
from tests.integration.notifications.receivers import HttpReceiver, wait_for
from tests.support import PASSWORD, free_port, make_tenant, test_settings
from waybill.services import ApiService

TRAP_HOST = "127.0.0.2"  # loopback, but not on the fixtures' allowlist
NAME = "hooks.example.test"


class Trap:
    """A TCP listener standing in for a forbidden address: counts connections, answers 302
    to `location` when one is set (a receiver redirecting the worker elsewhere)."""

    def __init__(self, host: str = TRAP_HOST, location: str = "") -> None:
        self.host, self.location, self.connections = host, location, 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Trap:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(Exception):
            if self.location:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(
                    f"HTTP/1.1 302 Found\r\nLocation: {self.location}\r\nContent-Length: 0\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                await writer.drain()
        writer.close()


@pytest.fixture(autouse=True)
def name_never_reaches_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the code under test does (the fake resolver bypassed, the check removed), NAME is
    never sent to a real DNS server: the system lookup refuses it."""
    real = socket.getaddrinfo

    def lookup(host: bytes | str | None, *args: Any, **kwargs: Any) -> Any:
        if NAME in (host.decode() if isinstance(host, bytes) else host or ""):
            raise socket.gaierror(socket.EAI_NONAME, f"{NAME} is not looked up in tests")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)


def fake_resolver(*answers: list[str]) -> tuple[Callable[[str, int], Awaitable[list[str]]], list[str]]:
    """Answers NAME with each list in turn (the last one repeats); records the names asked."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:  # noqa: ARG001 - the resolver's signature
        assert host == NAME, f"unexpected lookup of {host}"
        asked.append(host)
        return answers[min(len(asked), len(answers)) - 1]

    return resolve, asked


async def pending_delivery(sessionmaker: async_sessionmaker[AsyncSession], url: str) -> uuid.UUID:
    """A subscription at `url` written straight to the database (as one registered before the
    policy existed) with one pending event for it."""
    org = (await make_tenant(sessionmaker)).organization_id
    async with sessionmaker() as session:
        sub = WebhookSubscription(organization_id=org, url=url, events=["*"], secret="whsec_" + "x" * 20)
        session.add(sub)
        await session.flush()
        wd = WebhookDelivery(
            organization_id=org,
            subscription_id=sub.id,
            event_id=f"egress-{uuid.uuid4().hex}",
            event_type="delivery.created",
            payload={"hello": "world"},
        )
        session.add(wd)
        await session.commit()
        return wd.id


async def attempts_of(
    sessionmaker: async_sessionmaker[AsyncSession], ident: uuid.UUID
) -> list[WebhookAttempt]:
    async with sessionmaker() as session:
        return list(
            await session.scalars(select(WebhookAttempt).where(WebhookAttempt.webhook_delivery_id == ident))
        )


def strict(database_url: str, **over: object) -> Settings:
    return test_settings(database_url=database_url, webhook_timeout_seconds=2, **over)


# --- registration ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def strict_api(
    database_url: str, dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """An API with the default policy (no allowlist): registration only, no workers needed."""
    settings = test_settings(
        database_url=database_url,
        temporal_task_queue=f"egress-{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path_factory.mktemp("egress-data"),
    )
    resources = await Resources.open(settings, TemporalConnector(settings, dev_env.client))
    port = free_port()
    service = ApiService(resources, "127.0.0.1", port)
    await service.start()
    yield f"http://127.0.0.1:{port}"
    await service.stop()
    await resources.close()


REFUSED_AT_REGISTRATION = {
    "http://127.0.0.1:7233/": "127.0.0.1 is a forbidden address (loopback)",
    "http://[::1]:6379/": "::1 is a forbidden address (loopback)",
    "http://169.254.169.254/latest/meta-data/": "(link-local, where cloud metadata lives)",
    "http://10.0.0.1/": "10.0.0.1 is a forbidden address (private)",
    "http://0.0.0.0:8000/": "(unspecified)",
    "http://[::ffff:127.0.0.1]/": "IPv4 127.0.0.1 inside IPv6",
    "http://2130706433/": "127.0.0.1 is a forbidden address",  # the URL parser normalises it
    "http://0x7f.1/": "127.0.0.1 is a forbidden address",
    "http://224.0.0.251/": "(multicast)",
    "http://localhost:8000/api/v1/": "localhost is a forbidden host name",
    "http://temporal:7233/": "single-label name",
}


async def test_registration_refuses_forbidden_urls(
    strict_api: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    tenant = await make_tenant(sessionmaker)
    async with httpx.AsyncClient(base_url=strict_api, timeout=15) as http:
        login = await http.post(
            "/api/v1/auth/login", json={"email": tenant.emails[Role.ADMIN], "password": PASSWORD}
        )
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        for url, reason in REFUSED_AT_REGISTRATION.items():
            r = await http.post("/api/v1/webhooks", headers=admin, json={"url": url, "events": ["*"]})
            assert r.status_code == 422, f"{url}: {r.status_code} {r.text}"
            assert r.headers["content-type"].startswith("application/problem+json")
            problem = r.json()
            assert problem["code"] == "webhook_url_forbidden", url
            assert reason in problem["detail"], (url, problem["detail"])
            assert "WAYBILL_WEBHOOK_ALLOWED_HOSTS" in problem["detail"]
        assert (await http.get("/api/v1/webhooks", headers=admin)).json()["items"] == []

        made = await post(http, "/api/v1/webhooks", admin, {"url": "https://shop.example/h", "events": ["*"]})
        moved = await http.patch(
            f"/api/v1/webhooks/{made['id']}", headers=admin, json={"url": "http://192.168.0.10/"}
        )
        assert (moved.status_code, moved.json()["code"]) == (422, "webhook_url_forbidden")
        long = await http.post(
            "/api/v1/webhooks",
            headers=admin,
            json={"url": "https://shop.example/" + "a" * 2000, "events": ["*"]},
        )
        assert (long.status_code, long.json()["code"]) == (422, "validation_error")

        # A subscription written before the policy (or under a wider allowlist) is not re-enabled.
        async with sessionmaker() as session:
            old = WebhookSubscription(
                organization_id=tenant.organization_id,
                url="http://10.1.2.3/",
                events=["*"],
                secret="whsec_" + "x" * 20,
                active=False,
            )
            session.add(old)
            await session.commit()
        again = await http.patch(f"/api/v1/webhooks/{old.id}", headers=admin, json={"active": True})
        assert (again.status_code, again.json()["code"]) == (422, "webhook_url_forbidden")
        assert (await http.get(f"/api/v1/webhooks/{made['id']}", headers=admin)).json()["url"] == (
            "https://shop.example/h"
        )


async def test_the_allowlist_admits_only_what_it_names(http: httpx.AsyncClient, org: Org) -> None:
    """The notification fixtures name 127.0.0.1, nothing else."""
    ok = await http.post(
        "/api/v1/webhooks", headers=org.admin, json={"url": "http://127.0.0.1:9/h", "events": ["*"]}
    )
    assert ok.status_code == 201, ok.text
    other = await http.post(
        "/api/v1/webhooks", headers=org.admin, json={"url": f"http://{TRAP_HOST}:9/h", "events": ["*"]}
    )
    assert (other.status_code, other.json()["code"]) == (422, "webhook_url_forbidden")


# --- delivery ----------------------------------------------------------------------------------


async def test_a_forbidden_url_fails_once_through_the_worker_without_a_connection(
    http: httpx.AsyncClient,
    org: Org,
    sessionmaker: async_sessionmaker[AsyncSession],
    notify_resources: Resources,
) -> None:
    """The whole path: the event is planned, the activity refuses, the workflow records the delivery
    as failed at once (not a day of retries), and the trap never saw a connection."""
    async with Trap() as trap:
        async with sessionmaker() as session:
            sub = WebhookSubscription(
                organization_id=org.tenant.organization_id,
                url=f"http://{TRAP_HOST}:{trap.port}/hook",  # stored before the policy existed
                events=["created"],
                secret="whsec_" + "y" * 20,
            )
            session.add(sub)
            await session.commit()
        did = (
            await post(http, "/api/v1/deliveries", org.dispatcher, delivery_body(f"E-{uuid.uuid4().hex[:6]}"))
        )["id"]

        async def failed() -> bool:
            async with sessionmaker() as session:
                row = await session.scalar(
                    select(WebhookDelivery).where(WebhookDelivery.subscription_id == sub.id)
                )
                return row is not None and row.status == "failed"

        await wait_for(failed, 20, "the refused webhook to be recorded as failed")
        async with sessionmaker() as session:
            row = await session.scalar(
                select(WebhookDelivery).where(WebhookDelivery.subscription_id == sub.id)
            )
            stored = await session.get(WebhookSubscription, sub.id)
        assert row is not None
        attempts = await attempts_of(sessionmaker, row.id)
        assert row.attempts == 1
        assert len(attempts) == 1
        assert attempts[0].response_code is None
        assert not attempts[0].succeeded
        assert attempts[0].error == (
            f"refused: {TRAP_HOST} is a forbidden address (loopback); "
            "an operator can allow it in WAYBILL_WEBHOOK_ALLOWED_HOSTS"
        )
        assert stored is not None
        assert stored.failing_since is not None
        assert stored.active
        assert trap.connections == 0
        await post(http, f"/api/v1/deliveries/{did}/cancel", org.dispatcher, {"reason": "test over"})
        await notifications_done(await notify_resources.temporal.get(), did)
        assert trap.connections == 0


async def test_a_name_resolving_to_a_forbidden_address_is_refused_before_connecting(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Trap() as trap:
        resolve, asked = fake_resolver([TRAP_HOST])
        monkeypatch.setattr(egress, "resolve", resolve)
        ident = await pending_delivery(sessionmaker, f"http://{NAME}:{trap.port}/hook")
        outcome = await attempt_webhook(sessionmaker, strict(database_url), ident, 1)
        assert outcome.status == "refused"
        assert f"{NAME} resolves to {TRAP_HOST}, which is a forbidden address (loopback)" in outcome.detail
        assert asked == [NAME]
        assert trap.connections == 0
        [attempt] = await attempts_of(sessionmaker, ident)
        assert attempt.error is not None
        assert attempt.error.startswith(f"refused: {NAME} resolves to")


async def test_one_forbidden_address_among_the_answers_refuses_the_name(
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    receiver: HttpReceiver,
) -> None:
    """Rebinding by a mixed answer: an allowed address first, a forbidden one after it."""
    async with Trap() as trap:
        resolve, _ = fake_resolver(["127.0.0.1", TRAP_HOST])
        monkeypatch.setattr(egress, "resolve", resolve)
        path = unique_path()
        ident = await pending_delivery(sessionmaker, f"http://{NAME}:{receiver.port}{path}")
        settings = strict(database_url, webhook_allowed_hosts=["127.0.0.1"])
        outcome = await attempt_webhook(sessionmaker, settings, ident, 1)
        assert outcome.status == "refused", outcome
        assert receiver.at(path, ok_only=False) == []
        assert trap.connections == 0


async def test_the_connection_goes_to_the_checked_address_with_the_original_host(
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    receiver: HttpReceiver,
) -> None:
    """DNS rebinding between check and connect: the resolver would answer the trap the second
    time, but there is no second time. The receiver still sees the URL's name as Host."""
    async with Trap() as trap:
        resolve, asked = fake_resolver(["127.0.0.1"], [TRAP_HOST])
        monkeypatch.setattr(egress, "resolve", resolve)
        path = unique_path()
        ident = await pending_delivery(sessionmaker, f"http://{NAME}:{receiver.port}{path}")
        settings = strict(database_url, webhook_allowed_hosts=["127.0.0.1"])
        outcome = await attempt_webhook(sessionmaker, settings, ident, 1)
        assert outcome.status == "succeeded", outcome
        assert asked == [NAME]
        [call] = receiver.at(path)
        assert call.headers["Host"] == f"{NAME}:{receiver.port}"
        assert trap.connections == 0


async def test_a_literal_forbidden_address_is_refused_without_resolving(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Trap(host="127.0.0.1") as trap:
        resolve, asked = fake_resolver([])
        monkeypatch.setattr(egress, "resolve", resolve)
        ident = await pending_delivery(sessionmaker, f"http://127.0.0.1:{trap.port}/")
        outcome = await attempt_webhook(sessionmaker, strict(database_url), ident, 1)
        assert outcome.status == "refused"
        assert "127.0.0.1 is a forbidden address (loopback)" in outcome.detail
        assert asked == []
        assert trap.connections == 0


async def test_redirects_are_not_followed(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """An allowed receiver answering 302 to a forbidden address: that is its answer, a failed
    attempt (retried later), and nothing goes to the Location."""
    async with Trap() as target, Trap(host="127.0.0.1") as redirector:
        redirector.location = f"http://{TRAP_HOST}:{target.port}/latest/meta-data/"
        ident = await pending_delivery(sessionmaker, f"http://127.0.0.1:{redirector.port}/hook")
        settings = strict(database_url, webhook_allowed_hosts=["127.0.0.1"])
        outcome = await attempt_webhook(sessionmaker, settings, ident, 1)
        assert (outcome.status, outcome.detail) == ("failed", "receiver answered 302")
        assert redirector.connections == 1
        assert target.connections == 0


async def test_production_refuses_plain_http_at_delivery(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with Trap(host="127.0.0.1") as trap:
        ident = await pending_delivery(sessionmaker, f"http://127.0.0.1:{trap.port}/")
        settings = strict(database_url, webhook_allowed_hosts=["127.0.0.1"]).model_copy(
            update={"env": Environment.PRODUCTION}
        )
        outcome = await attempt_webhook(sessionmaker, settings, ident, 1)
        assert outcome.status == "refused"
        assert "https is required" in outcome.detail
        assert trap.connections == 0


async def test_tls_to_a_pinned_address_uses_the_name_for_sni_and_verification(
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Only the TCP connect is pinned: the TLS handshake names the URL's host (SNI) and the
    certificate is verified against it (a self-signed one for that name is refused)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={NAME}"]
        + ["-addext", f"subjectAltName=DNS:{NAME}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    names: list[str | None] = []
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    def record_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        names.append(name)

    server_tls.sni_callback = record_sni

    async def serve(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_tls)
    try:
        port = server.sockets[0].getsockname()[1]
        resolve, asked = fake_resolver(["127.0.0.1"])
        monkeypatch.setattr(egress, "resolve", resolve)
        ident = await pending_delivery(sessionmaker, f"https://{NAME}:{port}/hook")
        settings = strict(database_url, webhook_allowed_hosts=["127.0.0.1"])
        outcome = await attempt_webhook(sessionmaker, settings, ident, 1)
    finally:
        server.close()
        await server.wait_closed()
    assert outcome.status == "failed"
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.detail
    assert asked == [NAME]
    assert names == [NAME]
