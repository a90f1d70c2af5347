"""A known fleet history for the analytics tests: deliveries with hand-picked event times, a
vehicle track along a known path, a route with its plan. Expected values are in the tests."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.history.base import DeliveryEvent, HistoryStore, Position
from db.models import DeliveryRow, Depot, Driver, RoutePlanRow, RouteRow, Vehicle
from domain.ids import uuid7

DAY = "2026-01-14"  # Europe/Berlin is UTC+1: the local day is 2026-01-13T23:00Z .. 2026-01-14T23:00Z
LAT, LON = 52.5, 13.4
STEP = 0.001  # degrees of latitude per minute while moving (111.195 m with Waybill's earth radius)


def z(hhmm: str, day: str = DAY) -> datetime:
    return datetime.fromisoformat(f"{day}T{hhmm}:00+00:00")


@dataclass
class Fleet:
    org: uuid.UUID
    depot: uuid.UUID
    v1: uuid.UUID
    v2: uuid.UUID
    r1: uuid.UUID
    r2: uuid.UUID
    ids: dict[str, uuid.UUID] = field(default_factory=dict)


async def make_fleet(sm: async_sessionmaker[AsyncSession], org: uuid.UUID) -> Fleet:
    async with sm() as s:
        depot = Depot(organization_id=org, name="Mitte", lat=LAT, lon=LON, timezone="Europe/Berlin")
        s.add(depot)
        await s.flush()
        v1 = Vehicle(organization_id=org, name="Van 1", capacity_units=10, home_depot_id=depot.id)
        v2 = Vehicle(organization_id=org, name="Van 2", home_depot_id=depot.id)
        s.add_all([v1, v2])
        await s.flush()
        r1 = Driver(organization_id=org, name="Rita", vehicle_id=v1.id)
        r2 = Driver(organization_id=org, name="Rolf", vehicle_id=v2.id)
        s.add_all([r1, r2])
        await s.commit()
        return Fleet(org, depot.id, v1.id, v2.id, r1.id, r2.id)


async def add_delivery(
    sm: async_sessionmaker[AsyncSession],
    history: HistoryStore,
    fleet: Fleet,
    name: str,
    events: list[tuple[str, datetime, dict[str, Any]]],
    window: tuple[datetime, datetime] | None = None,
    units: int = 1,
    vehicle: uuid.UUID | None = None,
    driver: uuid.UUID | None = None,
) -> None:
    did = uuid7()
    fleet.ids[name] = did
    spec = {
        "dropoff": {
            "address": name,
            "lat": LAT,
            "lon": LON,
            "windows": [{"start": window[0].isoformat(), "end": window[1].isoformat()}] if window else [],
        },
        "size": {"units": units, "weight_kg": 0.0, "volume_m3": 0.0},
        "depot_id": None,
    }
    async with sm() as s:
        s.add(
            DeliveryRow(
                id=did,
                organization_id=fleet.org,
                sequence=len(events),
                status=events[-1][0],
                vehicle_id=vehicle,
                driver_id=driver,
                dropoff_lat=LAT,
                dropoff_lon=LON,
                window_start=window[0] if window else None,
                window_end=window[1] if window else None,
                state={"spec": spec},
                created_at=events[0][1] - timedelta(hours=1),
                updated_at=events[-1][1],
            )
        )
        await s.commit()
    for seq, (kind, at, data) in enumerate(events, start=1):
        await history.append_event(
            DeliveryEvent(fleet.org, did, f"delivery-{did}", seq, kind, at, "test", data)
        )


def assigned(at: datetime, vehicle: uuid.UUID, driver: uuid.UUID) -> tuple[str, datetime, dict[str, Any]]:
    return ("assigned", at, {"vehicle_id": str(vehicle), "driver_id": str(driver)})


def v1_track(fleet: Fleet) -> list[Position]:
    """Stationary 08:00-08:10, north at STEP per minute 08:10-08:20, silent 20 min, stationary
    08:40-09:20; plus a fix the evening before (another local day), an imprecise fix and a spike."""
    fixes: list[tuple[datetime, float, float, float]] = []
    for m in range(0, 11):
        fixes.append((z("08:00") + timedelta(minutes=m), LAT, LON, 5.0))
    for m in range(1, 11):
        fixes.append((z("08:10") + timedelta(minutes=m), LAT + STEP * m, LON, 5.0))
    for m in range(0, 41):
        fixes.append((z("08:40") + timedelta(minutes=m), LAT + STEP * 10, LON, 5.0))
    fixes.append((z("22:30", "2026-01-13"), LAT + 1, LON, 5.0))  # local 23:30 on the 13th
    fixes.append((z("08:05") + timedelta(seconds=30), LAT + 0.05, LON, 500.0))  # accuracy 500 m
    fixes.append((z("08:50") + timedelta(seconds=30), LAT + 0.5, LON, 5.0))  # a 55 km jump and back
    positions = [
        Position(fleet.org, fleet.v1, fleet.r1, seq, at, lat, lon, accuracy_m=acc)
        for seq, (at, lat, lon, acc) in enumerate(fixes)
    ]
    random.Random(3).shuffle(positions)  # stored out of order
    return positions


async def add_route(sm: async_sessionmaker[AsyncSession], fleet: Fleet) -> str:
    plan_id = uuid7()
    route_id = f"route-{fleet.v1}-{DAY}"

    def stop(name: str, travel: int, service: int, status: str, finished: datetime | None) -> dict[str, Any]:
        return {
            "delivery_id": name,
            "kind": "delivery",
            "lat": LAT,
            "lon": LON,
            "travel_s": travel,
            "service_s": service,
            "status": status,
            "finished_at": finished.isoformat() if finished else None,
        }

    state = {
        "route_id": route_id,
        "organization_id": str(fleet.org),
        "vehicle_id": str(fleet.v1),
        "driver_id": str(fleet.r1),
        "start_at": z("08:00").isoformat(),
        "end_travel_s": 600,
        "stops": [
            stop("a", 600, 300, "done", z("08:20")),
            stop("b", 300, 300, "done", z("08:45")),
            stop("c", 900, 300, "dropped", None),
        ],
    }
    async with sm() as s:
        s.add(
            RoutePlanRow(
                id=plan_id,
                organization_id=fleet.org,
                depot_id=fleet.depot,
                status="applied",
                requested_by="test",
                state={"plan": {"routes": [{"vehicle_id": str(fleet.v1), "distance_m": 1500}]}},
            )
        )
        s.add(
            RouteRow(
                id=route_id,
                organization_id=fleet.org,
                vehicle_id=fleet.v1,
                driver_id=fleet.r1,
                shift=DAY,
                plan_id=str(plan_id),
                status="completed",
                start_at=z("08:00"),
                state=state,
            )
        )
        await s.commit()
    return route_id


async def build_known_history(
    sm: async_sessionmaker[AsyncSession], history: HistoryStore, org: uuid.UUID
) -> Fleet:
    f = await make_fleet(sm, org)
    v1, v2, r1, r2 = f.v1, f.v2, f.r1, f.r2
    common = [("picked_up", z("08:00"), {}), ("out_for_delivery", z("08:05"), {})]
    await add_delivery(
        sm, history, f, "d1",
        [("created", z("06:00"), {}), assigned(z("07:00"), v1, r1), *common,
         ("arrived", z("09:30"), {}), ("delivered", z("09:40"), {})],
        (z("09:00"), z("11:00")), units=4, vehicle=v1, driver=r1,
    )  # fmt: skip
    await add_delivery(
        sm, history, f, "d2",
        [("created", z("06:00"), {}), assigned(z("07:00"), v1, r1), *common,
         ("arrived", z("10:20"), {}), ("delivered", z("10:30"), {})],
        (z("09:00"), z("10:00")), units=2, vehicle=v1, driver=r1,
    )  # fmt: skip
    await add_delivery(
        sm, history, f, "d3",
        [("created", z("06:00"), {}), assigned(z("07:00"), v1, r1), *common,
         ("arrived", z("11:00"), {}), ("failed", z("11:05"), {"reason": "recipient_absent"}),
         ("retry_scheduled", z("11:05"), {}), assigned(z("12:00"), v2, r2),
         ("picked_up", z("13:00"), {}), ("out_for_delivery", z("13:05"), {}),
         ("arrived", z("14:00"), {"implicit": True}), ("delivered", z("14:00"), {})],
        (z("12:00"), z("13:00")), units=1, vehicle=v2, driver=r2,
    )  # fmt: skip
    await add_delivery(  # spans midnight: picked up on the 14th, delivered 00:20 local on the 15th
        sm, history, f, "d4",
        [("created", z("20:00"), {}), assigned(z("21:00"), v2, r2), ("picked_up", z("22:00"), {}),
         ("out_for_delivery", z("22:05"), {}), ("arrived", z("23:10"), {}), ("delivered", z("23:20"), {})],
        (z("22:00"), z("23:30")), units=1, vehicle=v2, driver=r2,
    )  # fmt: skip
    await add_delivery(
        sm, history, f, "d5",
        [("created", z("06:00"), {}), assigned(z("07:00"), v2, r2), *common,
         ("failed", z("09:00"), {"reason": "address_not_found"}), ("returned", z("09:00"), {})],
        (z("09:00"), z("12:00")), vehicle=v2, driver=r2,
    )  # fmt: skip
    await add_delivery(sm, history, f, "d6", [("created", z("06:00"), {}), ("cancelled", z("07:00"), {})])
    await add_delivery(
        sm, history, f, "d7",
        [("created", z("06:00"), {}), assigned(z("12:30"), v2, r2), ("picked_up", z("13:00"), {}),
         ("out_for_delivery", z("13:05"), {}), ("arrived", z("15:00"), {}), ("delivered", z("15:06"), {})],
        None, vehicle=v2, driver=r2,
    )  # fmt: skip
    await add_delivery(  # the day before: not in the 14th's report
        sm, history, f, "d8",
        [("created", z("06:00", "2026-01-13"), {}), assigned(z("07:00", "2026-01-13"), v1, r1),
         ("picked_up", z("08:00", "2026-01-13"), {}), ("out_for_delivery", z("08:05", "2026-01-13"), {}),
         ("delivered", z("09:00", "2026-01-13"), {})],
        None, vehicle=v1, driver=r1,
    )  # fmt: skip
    await history.append_positions(v1_track(f))
    await add_route(sm, f)
    return f
