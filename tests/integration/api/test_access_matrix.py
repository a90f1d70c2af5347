"""Function- and object-level authorization over every endpoint of /api/v1.

The roles each endpoint allows are read from the endpoint itself (its `require_roles` dependency),
so a new endpoint is covered the day it is added: every role outside its set gets 403, an
anonymous caller 401; and another organization's objects answer 404 to everyone, admins included.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from domain.roles import Role
from tests.integration.api.conftest import Fleet, LoginFn
from tests.integration.api.test_deliveries import body
from tests.support import Tenant, make_tenant, test_settings

PUBLIC = {
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/public/tracking/{token}"),  # a customer's tracking link is its own credential
}
API_KEY_ONLY = {("POST", "/api/v1/integrations/orders")}  # an organization's API key, never a user token


def _allowed(dependant: Any) -> set[Role] | None:
    """The roles of the endpoint's require_roles dependency; None when it has none."""
    for cell in getattr(dependant.call, "__closure__", None) or ():
        value = cell.cell_contents
        if isinstance(value, frozenset) and all(isinstance(v, Role) for v in value):
            return set(value)
    for sub in dependant.dependencies:
        found = _allowed(sub)
        if found is not None:
            return found
    return None


ROUTES = create_app(test_settings()).routes
ENDPOINTS = [
    (method, route.path, _allowed(route.dependant))
    for route in ROUTES
    if isinstance(route, APIRoute) and route.path.startswith("/api/v1")
    for method in sorted(route.methods or ())
]


def _url(path: str) -> str:
    return re.sub(r"{\w+}", lambda _: str(uuid.uuid4()), path)


def test_every_route_sits_in_the_apps_own_router() -> None:
    """No included routers: FastAPI resolves those anew on every request (api/app.py)."""
    assert not [r for r in ROUTES if hasattr(r, "original_router")]


def test_the_matrix_covers_the_api() -> None:
    assert len(ENDPOINTS) > 60
    guarded = [e for e in ENDPOINTS if e[2] is not None]
    assert len(guarded) > 50


async def test_roles_outside_an_endpoints_set_get_403_and_anonymous_callers_401(
    http: httpx.AsyncClient, tenant: Tenant, login: LoginFn
) -> None:
    headers = {role: await login(tenant, role) for role in Role}
    wrong: list[str] = []
    for method, path, allowed in ENDPOINTS:
        url = _url(path)
        anonymous = await http.request(method, url, json={})
        if (method, path) not in PUBLIC and anonymous.status_code != 401:
            wrong.append(f"anonymous {method} {path}: {anonymous.status_code}")
        for role in Role:
            r = await http.request(method, url, headers=headers[role], json={})
            forbidden = allowed is not None and role not in allowed
            if forbidden and r.status_code != 403:
                wrong.append(f"{role.value} {method} {path}: {r.status_code}, expected 403")
            if (method, path) in API_KEY_ONLY:
                if r.status_code != 401:
                    wrong.append(
                        f"{role.value} {method} {path}: {r.status_code}, expected 401 (API keys only)"
                    )
            elif not forbidden and r.status_code in (401, 403) and (method, path) not in PUBLIC:
                wrong.append(f"{role.value} {method} {path}: {r.status_code}, expected to be let in")
    assert not wrong, "\n".join(wrong)


async def test_another_organizations_objects_are_not_found_even_for_its_admin(
    http: httpx.AsyncClient, fleet: Fleet, login: LoginFn, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    mine, admin = fleet.dispatcher, await login(fleet.tenant, Role.ADMIN)
    depot = await http.post(
        "/api/v1/depots", headers=mine, json={"name": "A", "location": {"lat": 1, "lon": 2}}
    )
    delivery = await http.post("/api/v1/deliveries", headers=mine, json=body())
    hook = await http.post(
        "/api/v1/webhooks", headers=admin, json={"url": "https://example.test/hook", "events": ["delivered"]}
    )
    assert (depot.status_code, delivery.status_code, hook.status_code) == (201, 201, 201), hook.text
    objects = {
        "depot_id": depot.json()["id"],
        "vehicle_id": fleet.vehicle_id,
        "driver_id": fleet.driver_id,
        "delivery_id": delivery.json()["id"],
        "user_id": str(fleet.tenant.user_ids[Role.VIEWER]),
        "webhook_id": hook.json()["id"],
    }
    other = await make_tenant(sessionmaker)
    intruders = {role: await login(other, role) for role in Role}
    wrong: list[str] = []
    tried = 0
    for method, path, allowed in ENDPOINTS:
        names = re.findall(r"{(\w+)}", path)
        if not names or any(n not in objects for n in names):
            continue
        tried += 1
        url = path.format_map(objects)
        # The most powerful role the endpoint lets in: the check must be ownership, not the role.
        role = Role.ADMIN if allowed is None or Role.ADMIN in allowed else sorted(allowed)[0]
        r = await http.request(method, url, headers=intruders[role], json={})
        # 422: the body was refused before any object was looked up, the same for every id.
        if r.status_code != 404 and not (r.status_code == 422 and method in ("POST", "PUT", "PATCH")):
            wrong.append(f"{method} {url}: {r.status_code} {r.text[:120]}")
    assert tried > 25
    # Still there for their own organization.
    assert (await http.get(f"/api/v1/deliveries/{objects['delivery_id']}", headers=mine)).status_code == 200
    assert (await http.get(f"/api/v1/depots/{objects['depot_id']}", headers=mine)).status_code == 200
    assert not wrong, "\n".join(wrong)


async def test_fields_a_client_may_not_set_are_refused_not_ignored(
    http: httpx.AsyncClient, fleet: Fleet, tenant: Tenant
) -> None:
    other_org = str(uuid.uuid4())
    attempts = [
        ("POST", "/api/v1/vehicles", {"name": "V", "organization_id": other_org}),
        ("PATCH", f"/api/v1/vehicles/{fleet.vehicle_id}", {"organization_id": other_org}),
        ("POST", "/api/v1/deliveries", {**body(), "status": "delivered"}),
        ("POST", "/api/v1/deliveries", {**body(), "organization_id": other_org}),
        ("PATCH", f"/api/v1/drivers/{fleet.driver_id}", {"id": str(uuid.uuid4())}),
        (
            "POST",
            "/api/v1/depots",
            {"name": "D", "location": {"lat": 1, "lon": 2}, "created_at": "2020-01-01T00:00:00Z"},
        ),
    ]
    for method, url, payload in attempts:
        r = await http.request(method, url, headers=fleet.dispatcher, json=payload)
        assert r.status_code == 422, f"{method} {url}: {r.status_code}"
        assert r.json()["code"] == "validation_error"
    vehicle = (await http.get(f"/api/v1/vehicles/{fleet.vehicle_id}", headers=fleet.dispatcher)).json()
    assert vehicle["name"] == "Van 1"  # unchanged
