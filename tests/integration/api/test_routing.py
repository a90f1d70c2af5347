"""Route planning end to end over the REST API: plan, apply, follow progress, auto-dispatch.

Real dev server, real worker on both task queues (the optimizer on `routing`), real database.
The depot's time zone is chosen so that it is about noon there, so the test does not depend on
the hour it runs at (vehicles work 08:00-20:00 local; windows are the next six hours).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from domain.roles import Role
from tests.integration.api.conftest import LoginFn
from tests.support import Tenant

DEPOT = (52.52, 13.405)


def noon_zone(now: datetime) -> str:
    """An Etc/GMT zone where it is between 11:30 and 12:30 right now (POSIX signs are inverted)."""
    offset = round(12 - (now.hour + now.minute / 60))
    return "UTC" if offset == 0 else (f"Etc/GMT-{offset}" if offset > 0 else f"Etc/GMT+{-offset}")


async def poll(fetch: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fetch()
        if done(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met in {timeout}s; last value: {value}")
        await asyncio.sleep(0.2)


class Site:
    def __init__(self, http: httpx.AsyncClient, dispatcher: dict[str, str], driver: dict[str, str]) -> None:
        self.http, self.dispatcher, self.driver = http, dispatcher, driver
        self.depot_id = ""
        self.today = ""
        self.vehicle_ids: list[str] = []
        self.driver_vehicle = ""
        self.rng = random.Random(7)

    async def get(self, path: str, **params: Any) -> Any:
        r = await self.http.get(path, headers=self.dispatcher, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    async def delivery(self, **extra: Any) -> str:
        now = datetime.now(UTC)
        lat = DEPOT[0] + self.rng.uniform(-0.04, 0.04)
        lon = DEPOT[1] + self.rng.uniform(-0.06, 0.06)
        body = {
            "dropoff": {
                "address": f"Stop {lat:.4f},{lon:.4f}",
                "location": {"lat": lat, "lon": lon},
                "windows": [{"start": now.isoformat(), "end": (now + timedelta(hours=6)).isoformat()}],
                "service_minutes": 2,
            },
            "size": {"weight_kg": 1, "units": 1},
            "depot_id": self.depot_id,
            **extra,
        }
        r = await self.http.post("/api/v1/deliveries", headers=self.dispatcher, json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


@pytest.fixture
async def site(http: httpx.AsyncClient, tenant: Tenant, login: LoginFn) -> Site:
    s = Site(http, await login(tenant, Role.DISPATCHER), await login(tenant, Role.DRIVER))
    r = await http.post(
        "/api/v1/depots",
        headers=s.dispatcher,
        json={
            "name": "Mitte",
            "location": {"lat": DEPOT[0], "lon": DEPOT[1]},
            "timezone": noon_zone(datetime.now(UTC)),
        },
    )
    assert r.status_code == 201, r.text
    s.depot_id = r.json()["id"]
    s.today = datetime.now(ZoneInfo(r.json()["timezone"])).date().isoformat()
    for i in range(4):
        v = await http.post(
            "/api/v1/vehicles",
            headers=s.dispatcher,
            json={
                "name": f"Van {i + 1}",
                "capacity": {"units": 8, "weight_kg": 500},
                "home_depot_id": s.depot_id,
                "shift": {"start": "08:00", "end": "20:00"},
            },
        )
        assert v.status_code == 201, v.text
        s.vehicle_ids.append(v.json()["id"])
    # The tenant's driver login drives the first van.
    d = await http.post(
        "/api/v1/drivers",
        headers=s.dispatcher,
        json={"name": "Dario", "user_id": str(tenant.user_ids[Role.DRIVER]), "vehicle_id": s.vehicle_ids[0]},
    )
    assert d.status_code == 201, d.text
    s.driver_vehicle = s.vehicle_ids[0]
    return s


async def test_plan_apply_follow_and_auto_dispatch(site: Site) -> None:
    http = site.http
    deliveries = [await site.delivery(external_ref=f"R-{i}") for i in range(30)]

    r = await http.post(
        "/api/v1/route-plans",
        headers=site.dispatcher,
        json={"depot_id": site.depot_id, "time_limit_seconds": 1},
    )
    assert r.status_code == 202, r.text
    plan_id = r.json()["id"]
    assert r.json()["status"] == "optimizing"
    plan = await poll(
        lambda: site.get(f"/api/v1/route-plans/{plan_id}"), lambda p: p["status"] in ("applied", "failed")
    )
    assert plan["status"] == "applied", plan
    assert plan["unassigned"] == []
    assert plan["skipped"] == []
    # 30 units on vans of 8: every van is needed.
    assert sorted(r["vehicle_id"] for r in plan["routes"]) == sorted(site.vehicle_ids)
    planned_vehicle = {
        s["delivery_id"]: r["vehicle_id"] for r in plan["routes"] for s in r["stops"] if s["delivery_id"]
    }
    assert sorted(planned_vehicle) == sorted(deliveries)
    assert set(plan["outcomes"].values()) == {"assigned"}

    # Every delivery is assigned in its workflow, to the vehicle the plan chose.
    for did in deliveries:
        d = await site.get(f"/api/v1/deliveries/{did}", consistent="true")
        assert (d["status"], d["vehicle_id"]) == ("assigned", planned_vehicle[did])

    # Each vehicle has its RouteWorkflow, its stops in the plan's order.
    routes = await poll(lambda: site.get("/api/v1/routes", depot=site.depot_id), lambda rs: len(rs) == 4)
    assert sorted(r["vehicle_id"] for r in routes) == sorted(site.vehicle_ids)
    by_vehicle = {r["vehicle_id"]: r for r in routes}
    for planned in plan["routes"]:
        route = by_vehicle[planned["vehicle_id"]]
        assert [s["delivery_id"] for s in route["stops"]] == [
            s["delivery_id"] for s in planned["stops"] if s["delivery_id"]
        ]
        assert all(s["eta"] for s in route["stops"])

    # The driver works the first stop, then starts the second: the route moves forward.
    mine = await poll(lambda: _current(site), lambda r: r is not None)
    assert mine["vehicle_id"] == site.driver_vehicle
    # The driver delivers the first stop, reaches the second, and has the third's goods on board.
    first, second, third = (s["delivery_id"] for s in mine["stops"][:3])
    await _complete(site, first, mine["stops"][0]["location"])
    moved = await poll(
        lambda: site.get(f"/api/v1/routes/{mine['id']}"),
        lambda r: r["stops"][0]["status"] == "done" and r["status"] == "in_progress",
    )
    assert moved["next_stop"] == f"{second}:delivery"
    for action in ("accept", "pick-up", "depart", "arrive"):
        r = await http.post(f"/api/v1/deliveries/{second}/{action}", headers=site.driver, json={})
        assert r.status_code == 200, r.text
    r = await http.post(f"/api/v1/deliveries/{third}/pick-up", headers=site.driver, json={})
    assert r.status_code == 200, r.text
    await poll(
        lambda: site.get(f"/api/v1/routes/{mine['id']}"), lambda r: r["stops"][1]["status"] == "arrived"
    )

    # Auto-dispatch: a new delivery is assigned without moving stops already started.
    r = await http.put(
        f"/api/v1/depots/{site.depot_id}/dispatch",
        headers=site.dispatcher,
        json={"debounce_seconds": 0.5, "time_limit_seconds": 1},
    )
    assert r.status_code == 200, r.text
    assert r.json()["running"]
    late = await site.delivery(external_ref="R-late")
    added = await poll(
        lambda: site.get(f"/api/v1/deliveries/{late}"), lambda d: d["status"] == "assigned", timeout=90
    )
    assert added["vehicle_id"] in site.vehicle_ids
    after = await site.get(f"/api/v1/routes/{mine['id']}", consistent="true")
    # Started stops keep their place; goods on board stay on their vehicle.
    assert [(s["delivery_id"], s["status"]) for s in after["stops"][:2]] == [
        (first, "done"),
        (second, "arrived"),
    ]
    assert third in [s["delivery_id"] for s in after["stops"]]
    for did, status in ((second, "arrived"), (third, "picked_up")):
        still = await site.get(f"/api/v1/deliveries/{did}")
        assert (still["status"], still["vehicle_id"]) == (status, site.driver_vehicle)
    state = await poll(
        lambda: site.get(f"/api/v1/depots/{site.depot_id}/dispatch"), lambda d: d["batches"] >= 1
    )
    assert state["batches"] >= 1, state
    assert state["last_status"] == "applied", state
    r = await http.delete(f"/api/v1/depots/{site.depot_id}/dispatch", headers=site.dispatcher)
    assert r.status_code == 200
    assert not r.json()["running"]


async def test_infeasible_delivery_is_unassigned_with_its_reason(site: Site) -> None:
    ok = await site.delivery()
    heavy = await site.delivery(size={"weight_kg": 900, "units": 1})  # vans carry 500 kg
    r = await site.http.post(
        "/api/v1/route-plans",
        headers=site.dispatcher,
        json={"depot_id": site.depot_id, "time_limit_seconds": 1, "auto_apply": False, "date": site.today},
    )
    plan_id = r.json()["id"]
    plan = await poll(
        lambda: site.get(f"/api/v1/route-plans/{plan_id}"), lambda p: p["status"] != "optimizing"
    )
    assert plan["status"] == "planned"
    assert [(u["delivery_id"], u["reason"]) for u in plan["unassigned"]] == [(heavy, "capacity")]
    # Not applied yet: nothing assigned.
    assert (await site.get(f"/api/v1/deliveries/{ok}"))["status"] == "pending"
    applied = await site.http.post(f"/api/v1/route-plans/{plan_id}/apply", headers=site.dispatcher)
    assert applied.status_code == 200, applied.text
    assert applied.json()["status"] == "applied"
    assert (await site.get(f"/api/v1/deliveries/{ok}"))["status"] == "assigned"
    assert (await site.get(f"/api/v1/deliveries/{heavy}"))["status"] == "pending"
    again = await site.http.post(f"/api/v1/route-plans/{plan_id}/apply", headers=site.dispatcher)
    assert again.status_code == 409
    assert again.json()["code"] == "plan_not_applicable"


async def _current(site: Site) -> Any:
    r = await site.http.get("/api/v1/routes/current", headers=site.driver)
    return r.json() if r.status_code == 200 else None


async def _complete(site: Site, delivery_id: str, location: dict[str, float]) -> None:
    for action, body in (
        ("accept", {}),
        ("pick-up", {}),
        ("depart", {}),
        ("deliver", {"recipient_name": "Resident", "location": location}),
    ):
        r = await site.http.post(f"/api/v1/deliveries/{delivery_id}/{action}", headers=site.driver, json=body)
        assert r.status_code == 200, f"{action}: {r.text}"
