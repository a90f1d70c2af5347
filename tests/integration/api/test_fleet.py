from __future__ import annotations

import uuid

import httpx
import pytest

from domain.roles import Role
from tests.integration.api.conftest import LoginFn
from tests.integration.api.test_auth import assert_problem
from tests.support import Tenant

DEPOT = {
    "name": "North",
    "address": "1 Main St",
    "location": {"lat": 52.5, "lon": 13.4},
    "timezone": "Europe/Berlin",
}


@pytest.fixture
async def dispatcher(tenant: Tenant, login: LoginFn) -> dict[str, str]:
    return await login(tenant, Role.DISPATCHER)


async def test_depot_vehicle_driver_lifecycle(
    http: httpx.AsyncClient, tenant: Tenant, dispatcher: dict[str, str]
) -> None:
    depot = await http.post("/api/v1/depots", json=DEPOT, headers=dispatcher)
    assert depot.status_code == 201, depot.text
    depot_id = depot.json()["id"]
    vehicle = await http.post(
        "/api/v1/vehicles",
        headers=dispatcher,
        json={
            "name": "Van 7",
            "plate": "B-XY 7",
            "capacity": {"weight_kg": 700, "units": 40},
            "skills": ["fridge", "fragile", "fridge"],
            "home_depot_id": depot_id,
            "shift": {"start": "08:00", "end": "16:30"},
        },
    )
    assert vehicle.status_code == 201, vehicle.text
    v = vehicle.json()
    assert v["skills"] == ["fragile", "fridge"]
    assert v["capacity"] == {"weight_kg": 700.0, "volume_m3": None, "units": 40}
    assert v["shift"] == {"start": "08:00:00", "end": "16:30:00"}
    driver = await http.post(
        "/api/v1/drivers",
        headers=dispatcher,
        json={
            "name": "Rita",
            "phone": "+49 30 1234567",
            "user_id": str(tenant.user_ids[Role.DRIVER]),
            "vehicle_id": v["id"],
        },
    )
    assert driver.status_code == 201, driver.text

    patched = await http.patch(
        f"/api/v1/vehicles/{v['id']}",
        headers=dispatcher,
        json={"capacity": {"volume_m3": 5.5}, "shift": None},
    )
    assert patched.status_code == 200
    assert patched.json()["capacity"]["volume_m3"] == 5.5
    assert patched.json()["shift"] is None
    assert patched.json()["updated_at"] >= v["updated_at"]

    # A depot that vehicles call home cannot be deleted.
    assert_problem(await http.delete(f"/api/v1/depots/{depot_id}", headers=dispatcher), 409, "depot_in_use")
    assert (await http.delete(f"/api/v1/vehicles/{v['id']}", headers=dispatcher)).status_code == 204
    assert (await http.delete(f"/api/v1/depots/{depot_id}", headers=dispatcher)).status_code == 204
    assert_problem(await http.get(f"/api/v1/depots/{depot_id}", headers=dispatcher), 404, "depot_not_found")
    # The driver's vehicle link was cleared by the delete, not left dangling.
    d = await http.get(f"/api/v1/drivers/{driver.json()['id']}", headers=dispatcher)
    assert d.json()["vehicle_id"] is None


async def test_cursor_pagination_walks_every_row_once(
    http: httpx.AsyncClient, dispatcher: dict[str, str]
) -> None:
    created = []
    for i in range(7):
        r = await http.post("/api/v1/depots", headers=dispatcher, json={**DEPOT, "name": f"D{i}"})
        created.append(r.json()["id"])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/api/v1/depots", headers=dispatcher, params=params)).json()
        seen += [d["id"] for d in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created
    assert pages == 3


async def test_page_limits_and_bad_cursor(http: httpx.AsyncClient, dispatcher: dict[str, str]) -> None:
    assert_problem(
        await http.get("/api/v1/depots", headers=dispatcher, params={"limit": 10_000}), 400, "page_too_large"
    )
    assert_problem(
        await http.get("/api/v1/depots", headers=dispatcher, params={"cursor": "!!!"}), 400, "invalid_cursor"
    )


async def test_other_organization_is_invisible(
    http: httpx.AsyncClient, tenant: Tenant, login: LoginFn, sessionmaker: object
) -> None:
    from tests.support import make_tenant

    other = await make_tenant(sessionmaker)  # type: ignore[arg-type]
    theirs = await login(other, Role.DISPATCHER)
    mine = await login(tenant, Role.DISPATCHER)
    depot_id = (await http.post("/api/v1/depots", json=DEPOT, headers=theirs)).json()["id"]
    assert_problem(await http.get(f"/api/v1/depots/{depot_id}", headers=mine), 404, "depot_not_found")
    assert_problem(
        await http.patch(f"/api/v1/depots/{depot_id}", json={"name": "x"}, headers=mine),
        404,
        "depot_not_found",
    )
    assert_problem(await http.delete(f"/api/v1/depots/{depot_id}", headers=mine), 404, "depot_not_found")
    listing = (await http.get("/api/v1/depots", headers=mine)).json()
    assert depot_id not in [d["id"] for d in listing["items"]]
    # Nor can another organization's depot be referenced.
    r = await http.post("/api/v1/vehicles", headers=mine, json={"name": "V", "home_depot_id": depot_id})
    assert_problem(r, 422, "invalid_reference")


async def test_unknown_id_and_malformed_body(http: httpx.AsyncClient, dispatcher: dict[str, str]) -> None:
    assert_problem(
        await http.get(f"/api/v1/vehicles/{uuid.uuid4()}", headers=dispatcher), 404, "vehicle_not_found"
    )
    assert_problem(await http.get("/api/v1/vehicles/not-a-uuid", headers=dispatcher), 422, "validation_error")
    r = await http.post(
        "/api/v1/vehicles",
        headers=dispatcher,
        content=b"{not json",
    )
    assert_problem(r, 422, "validation_error")
    body = assert_problem(
        await http.post(
            "/api/v1/depots", headers=dispatcher, json={**DEPOT, "location": {"lat": 95, "lon": 0}}
        ),
        422,
        "validation_error",
    )
    assert body["errors"][0]["location"] == ["body", "location", "lat"]
    assert_problem(
        await http.post("/api/v1/depots", headers=dispatcher, json={**DEPOT, "timezone": "Mars/Base"}),
        422,
        "validation_error",
    )


async def test_mass_assignment_refused(
    http: httpx.AsyncClient, tenant: Tenant, dispatcher: dict[str, str]
) -> None:
    r = await http.post(
        "/api/v1/depots", headers=dispatcher, json={**DEPOT, "organization_id": str(uuid.uuid4())}
    )
    body = assert_problem(r, 422, "validation_error")
    assert "organization_id" in str(body["detail"])


async def test_duplicate_name_is_409(http: httpx.AsyncClient, dispatcher: dict[str, str]) -> None:
    assert (await http.post("/api/v1/vehicles", headers=dispatcher, json={"name": "Twin"})).status_code == 201
    assert_problem(
        await http.post("/api/v1/vehicles", headers=dispatcher, json={"name": "Twin"}),
        409,
        "vehicle_name_taken",
    )


async def test_roles(http: httpx.AsyncClient, tenant: Tenant, login: LoginFn) -> None:
    viewer = await login(tenant, Role.VIEWER)
    driver = await login(tenant, Role.DRIVER)
    assert (await http.get("/api/v1/vehicles", headers=viewer)).status_code == 200
    assert_problem(await http.post("/api/v1/vehicles", headers=viewer, json={"name": "V"}), 403, "forbidden")
    assert_problem(await http.post("/api/v1/depots", headers=driver, json=DEPOT), 403, "forbidden")
    assert_problem(await http.get("/api/v1/drivers", headers=driver), 403, "forbidden")


async def test_driver_link_must_be_a_driver_user(
    http: httpx.AsyncClient, tenant: Tenant, dispatcher: dict[str, str]
) -> None:
    r = await http.post(
        "/api/v1/drivers",
        headers=dispatcher,
        json={"name": "X", "user_id": str(tenant.user_ids[Role.VIEWER])},
    )
    assert_problem(r, 422, "invalid_reference")
    ok = await http.post(
        "/api/v1/drivers",
        headers=dispatcher,
        json={"name": "Y", "user_id": str(tenant.user_ids[Role.DRIVER])},
    )
    assert ok.status_code == 201
    again = await http.post(
        "/api/v1/drivers",
        headers=dispatcher,
        json={"name": "Z", "user_id": str(tenant.user_ids[Role.DRIVER])},
    )
    assert_problem(again, 409, "user_already_linked")
