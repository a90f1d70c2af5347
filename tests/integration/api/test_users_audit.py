"""Managing users (admins only, no mass assignment), password changes, and the audit log that
records logins, failures, token reuse, role changes and overrides — scoped to one organization."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.roles import Role
from tests.integration.api.conftest import Fleet, LoginFn
from tests.integration.api.test_deliveries import act, body
from tests.support import PASSWORD, Tenant, make_tenant

NEW_PASSWORD = "a-much-better-passphrase"


async def audit_actions(http: httpx.AsyncClient, admin: dict[str, str], **params: Any) -> list[str]:
    r = await http.get("/api/v1/audit", headers=admin, params=params)
    assert r.status_code == 200, r.text
    return [e["action"] for e in r.json()["items"]]


async def test_admins_manage_users_and_nothing_else_can_be_assigned(
    http: httpx.AsyncClient, tenant: Tenant, login: LoginFn
) -> None:
    admin, dispatcher = await login(tenant, Role.ADMIN), await login(tenant, Role.DISPATCHER)
    new = {
        "email": f"new-{tenant.slug}@example.test",
        "name": "New",
        "role": "viewer",
        "password": NEW_PASSWORD,
    }
    assert (await http.post("/api/v1/users", headers=dispatcher, json=new)).status_code == 403
    created = await http.post("/api/v1/users", headers=admin, json=new)
    assert created.status_code == 201, created.text
    uid = created.json()["id"]
    assert (await http.post("/api/v1/users", headers=admin, json=new)).json()["code"] == "email_taken"
    for field, value in (
        ("organization_id", str(tenant.organization_id)),
        ("password_hash", "x"),
        ("id", uid),
    ):
        r = await http.patch(f"/api/v1/users/{uid}", headers=admin, json={field: value})
        assert r.status_code == 422, field
    assert (
        await http.patch(f"/api/v1/users/{uid}", headers=dispatcher, json={"role": "admin"})
    ).status_code == 403
    # A dispatcher reads only themselves.
    me = tenant.user_ids[Role.DISPATCHER]
    assert (await http.get(f"/api/v1/users/{me}", headers=dispatcher)).status_code == 200
    assert (await http.get(f"/api/v1/users/{uid}", headers=dispatcher)).status_code == 404
    own_id = tenant.user_ids[Role.ADMIN]
    r = await http.patch(f"/api/v1/users/{own_id}", headers=admin, json={"role": "viewer"})
    assert r.json()["code"] == "cannot_demote_self"

    # A role change takes effect at once: the old token's role no longer matches.
    r = await http.patch(f"/api/v1/users/{me}", headers=admin, json={"role": "viewer"})
    assert r.json()["role"] == "viewer"
    assert (await http.get("/api/v1/depots", headers=dispatcher)).status_code == 401
    r = await http.patch(f"/api/v1/users/{me}", headers=admin, json={"active": False})
    assert r.json()["active"] is False
    again = await http.post(
        "/api/v1/auth/login", json={"email": tenant.emails[Role.DISPATCHER], "password": PASSWORD}
    )
    assert again.status_code == 401
    actions = await audit_actions(http, admin)
    assert actions[:4] == ["login_failed", "user_deactivated", "role_changed", "user_created"]
    event = (await http.get("/api/v1/audit", headers=admin, params={"action": "role_changed"})).json()[
        "items"
    ][0]
    assert event["details"] == {"previous": "dispatcher", "role": "viewer"}
    assert event["target_id"] == str(me)
    assert event["ip"] == "127.0.0.1"
    assert event["request_id"]


async def test_password_change_revokes_every_earlier_token(
    http: httpx.AsyncClient, tenant: Tenant, login: LoginFn
) -> None:
    email = tenant.emails[Role.VIEWER]
    first = (await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})).json()
    headers = {"Authorization": f"Bearer {first['access_token']}"}
    wrong = await http.post(
        "/api/v1/auth/password",
        headers=headers,
        json={"current_password": "nope", "new_password": NEW_PASSWORD},
    )
    assert wrong.status_code == 403
    ok = await http.post(
        "/api/v1/auth/password",
        headers=headers,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert ok.status_code == 204
    assert (await http.get("/api/v1/auth/me", headers=headers)).json()["code"] == "token_revoked"
    refreshed = await http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert refreshed.status_code == 401
    assert (
        await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).status_code == 401
    fresh = await http.post("/api/v1/auth/login", json={"email": email, "password": NEW_PASSWORD})
    assert fresh.status_code == 200  # issued after the change, even within the same second
    me = await http.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {fresh.json()['access_token']}"}
    )
    assert me.status_code == 200, me.text
    admin = await login(tenant, Role.ADMIN)
    assert "password_changed" in await audit_actions(http, admin)


async def test_token_reuse_and_overrides_are_audited_and_only_admins_of_the_org_read_them(
    http: httpx.AsyncClient, fleet: Fleet, login: LoginFn, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    t = fleet.tenant
    pair = (
        await http.post("/api/v1/auth/login", json={"email": t.emails[Role.VIEWER], "password": PASSWORD})
    ).json()
    assert (
        await http.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    ).status_code == 200
    reused = await http.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert reused.json()["code"] == "refresh_token_reused"

    did = (await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=body())).json()["id"]
    await act(http, fleet.dispatcher, did, "assign", {"vehicle_id": fleet.vehicle_id})
    await act(http, fleet.driver, did, "pick-up")
    await act(http, fleet.driver, did, "depart")
    await act(
        http, fleet.dispatcher, did, "deliver", {"recipient_name": "Neighbour", "override_distance": True}
    )

    admin = await login(t, Role.ADMIN)
    actions = await audit_actions(http, admin)
    assert "refresh_token_reused" in actions
    override = (await http.get("/api/v1/audit", headers=admin, params={"action": "delivery_override"})).json()
    assert [e["target_id"] for e in override["items"]] == [did]
    assert (await http.get("/api/v1/audit", headers=fleet.dispatcher)).status_code == 403
    # Another organization's admin sees none of it.
    other_admin = await login(await make_tenant(sessionmaker), Role.ADMIN)
    assert "delivery_override" not in await audit_actions(http, other_admin)


async def test_concurrent_refreshes_with_one_token(http: httpx.AsyncClient, tenant: Tenant) -> None:
    """Two refreshes racing with the same token: one wins, the other is reuse, and the family dies
    (the winner's new token too), whatever the interleaving."""
    email = tenant.emails[Role.VIEWER]
    pair = (await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})).json()
    results = await asyncio.gather(
        *(http.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}) for _ in range(2))
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 401]
    winner = next(r for r in results if r.status_code == 200).json()
    loser = next(r for r in results if r.status_code == 401).json()
    assert loser["code"] in ("refresh_token_reused", "token_revoked")
    after = await http.post("/api/v1/auth/refresh", json={"refresh_token": winner["refresh_token"]})
    assert after.status_code == 401
