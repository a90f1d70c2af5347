"""The logs of an end-to-end run (at DEBUG, JSON, every process in this one) contain no access or
refresh token, no password and no webhook secret, even where requests fail or a token is reused."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import httpx
import pytest

from domain.roles import Role
from plumbing.log_context import ContextFilter
from plumbing.logging import JsonFormatter, configure_logging
from tests.integration.api.conftest import Fleet
from tests.integration.api.test_deliveries import act, body
from tests.support import PASSWORD

SECRET = "whsec-the-receiver-shares-this-0123456789"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Logging as `waybill` configures it at DEBUG (JSON), captured; restored afterwards."""
    root = logging.getLogger()
    saved = (
        root.handlers[:],
        root.level,
        {n: logging.getLogger(n).level for n in logging.root.manager.loggerDict},
    )
    configure_logging("DEBUG", "json")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


async def test_no_token_password_or_secret_reaches_the_logs(
    http: httpx.AsyncClient, fleet: Fleet, captured: io.StringIO
) -> None:
    t = fleet.tenant
    secrets: list[str] = [PASSWORD, SECRET]
    pair = (
        await http.post("/api/v1/auth/login", json={"email": t.emails[Role.ADMIN], "password": PASSWORD})
    ).json()
    secrets += [pair["access_token"], pair["refresh_token"]]
    admin = {"Authorization": f"Bearer {pair['access_token']}"}
    await http.post(
        "/api/v1/auth/login", json={"email": t.emails[Role.ADMIN], "password": "wrong " + PASSWORD}
    )
    fresh = (await http.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})).json()
    secrets += [fresh["access_token"], fresh["refresh_token"]]
    await http.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )  # reuse: logged warning, and the session's access tokens are revoked
    again = (
        await http.post("/api/v1/auth/login", json={"email": t.emails[Role.ADMIN], "password": PASSWORD})
    ).json()
    secrets += [again["access_token"], again["refresh_token"]]
    admin = {"Authorization": f"Bearer {again['access_token']}"}
    hook = await http.post(
        "/api/v1/webhooks",
        headers=admin,
        json={"url": "http://127.0.0.1:9/hook", "events": ["*"], "secret": SECRET},
    )
    assert hook.status_code == 201, hook.text
    did = (await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=body())).json()["id"]
    await act(http, fleet.dispatcher, did, "assign", {"vehicle_id": fleet.vehicle_id})
    await http.get("/api/v1/depots", headers={"Authorization": "Bearer not-a-token"})
    await asyncio.sleep(2)  # the worker records the transitions and tries the webhook (which fails)
    text = captured.getvalue()
    assert "delivery" in text  # the capture did see the run
    leaked = [s[:12] + "…" for s in secrets if s in text]
    assert not leaked, f"found in the logs: {leaked}"
