"""Synthetic fleet history for analytics: a day of deliveries with their event logs and each
vehicle's GPS track, written through the stores (projection rows, `append_event`,
`append_positions`). Used by `waybill analytics demo` (a demo day for the seeded organization) and
by bench/analytics.py (30 days x 50 vehicles).

Each vehicle leaves its depot at 08:00 local with its deliveries loaded, drives straight lines at
8 m/s between stops, spends 3 minutes at each, and reports a fix every `ping_s` seconds. About one
delivery in ten fails (recipient absent) and is returned; windows are two hours around the
planned arrival, shifted so that some deliveries are late.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.history.base import DeliveryEvent, HistoryStore, Position
from db.repositories.demo_data import FleetVehicle, insert_delivery_rows
from domain.ids import uuid7

__all__ = ["FleetVehicle", "Written", "generate", "plan_vehicle_day", "write_history"]

SPEED_MPS = 8.0
DWELL_S = 180
POSITION_BATCH = 5000


@dataclass
class Written:
    deliveries: int = 0
    events: int = 0
    positions: int = 0


def _offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return lat + north_m / 111_320.0, lon + east_m / (111_320.0 * math.cos(math.radians(lat)))


def _distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    dn = (b[0] - a[0]) * 111_320.0
    de = (b[1] - a[1]) * 111_320.0 * math.cos(math.radians(a[0]))
    return math.hypot(dn, de)


def _state(
    did: uuid.UUID,
    org: uuid.UUID,
    v: FleetVehicle,
    stop: tuple[float, float],
    window: tuple[datetime, datetime],
    status: str,
    units: int,
) -> dict[str, Any]:
    return {
        "delivery_id": str(did),
        "organization_id": str(org),
        "status": status,
        "spec": {
            "dropoff": {
                "address": "synthetic",
                "lat": stop[0],
                "lon": stop[1],
                "windows": [{"start": window[0].isoformat(), "end": window[1].isoformat()}],
            },
            "size": {"weight_kg": 5.0 * units, "volume_m3": 0.05 * units, "units": units},
            "depot_id": str(v.depot_id) if v.depot_id else None,
        },
        "vehicle_id": str(v.vehicle_id),
        "driver_id": str(v.driver_id) if v.driver_id else None,
    }


def plan_vehicle_day(
    org: uuid.UUID, v: FleetVehicle, day: date, timezone: str, stops: int, ping_s: float, rng: random.Random
) -> tuple[list[dict[str, Any]], list[DeliveryEvent], list[Position]]:
    """One vehicle's day: projection rows, events and positions (nothing written)."""
    start = datetime.combine(day, time(8, 0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)
    here = (v.lat, v.lon)
    waypoints: list[tuple[datetime, tuple[float, float]]] = [(start, here)]
    rows: list[dict[str, Any]] = []
    events: list[DeliveryEvent] = []
    clock = start + timedelta(minutes=5)
    waypoints.append((clock, here))
    for _ in range(stops):
        did = uuid7(int(start.timestamp() * 1000), rng.randbytes(10))
        stop = _offset(v.lat, v.lon, rng.uniform(-4000, 4000), rng.uniform(-4000, 4000))
        arrive = clock + timedelta(seconds=_distance_m(here, stop) / SPEED_MPS)
        leave = arrive + timedelta(seconds=DWELL_S)
        waypoints += [(arrive, stop), (leave, stop)]
        row, timeline = _delivery(org, v, did, stop, (start, arrive, leave), rng)
        rows.append(row)
        events += timeline
        here, clock = stop, leave
    back = clock + timedelta(seconds=_distance_m(here, (v.lat, v.lon)) / SPEED_MPS)
    waypoints.append((back, (v.lat, v.lon)))
    return rows, events, _pings(org, v, waypoints, ping_s)


def _delivery(
    org: uuid.UUID,
    v: FleetVehicle,
    did: uuid.UUID,
    stop: tuple[float, float],
    times: tuple[datetime, datetime, datetime],
    rng: random.Random,
) -> tuple[dict[str, Any], list[DeliveryEvent]]:
    """One delivery of the day (`times`: the vehicle's start, its arrival at the stop, its departure):
    its projection row and its event log."""
    start, arrive, leave = times
    shift = timedelta(minutes=rng.choice([-90, -60, -30, -20, 0, 0, 0, 10]))  # some windows close early: late
    window = (arrive - timedelta(hours=1) + shift, arrive + timedelta(hours=1) + shift)
    failed = rng.random() < 0.1
    units = rng.randint(1, 4)
    driver = str(v.driver_id) if v.driver_id else None
    timeline: list[tuple[str, datetime, dict[str, Any]]] = [
        ("created", start - timedelta(hours=12), {}),
        ("assigned", start - timedelta(hours=1), {"vehicle_id": str(v.vehicle_id), "driver_id": driver}),
        ("picked_up", start, {}),
        ("out_for_delivery", start + timedelta(minutes=5), {}),
        ("arrived", arrive, {}),
    ]
    if failed:
        timeline += [("failed", leave, {"reason": "recipient_absent"}), ("returned", leave, {})]
    else:
        timeline.append(("delivered", leave, {}))
    wf = f"delivery-{did}"
    events = [
        DeliveryEvent(org, did, wf, seq, kind, at, "synthetic", data)
        for seq, (kind, at, data) in enumerate(timeline, start=1)
    ]
    status = "returned" if failed else "delivered"
    row = {
        "id": did,
        "organization_id": org,
        "sequence": len(timeline),
        "status": status,
        "vehicle_id": v.vehicle_id,
        "driver_id": v.driver_id,
        "dropoff_lat": stop[0],
        "dropoff_lon": stop[1],
        "window_start": window[0],
        "window_end": window[1],
        "state": _state(did, org, v, stop, window, status, units),
        "created_at": start - timedelta(hours=12),
        "updated_at": leave,
    }
    return row, events


def _pings(
    org: uuid.UUID, v: FleetVehicle, waypoints: list[tuple[datetime, tuple[float, float]]], ping_s: float
) -> list[Position]:
    out: list[Position] = []
    t = waypoints[0][0]
    leg = 0
    n = 0
    while t <= waypoints[-1][0]:
        while leg + 1 < len(waypoints) - 1 and waypoints[leg + 1][0] < t:
            leg += 1
        (t0, a), (t1, b) = waypoints[leg], waypoints[leg + 1]
        f = 0.0 if t1 == t0 else min(1.0, max(0.0, (t - t0) / (t1 - t0)))
        lat, lon = a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f
        out.append(Position(org, v.vehicle_id, v.driver_id, n, t, lat, lon, accuracy_m=8.0))
        n += 1
        t += timedelta(seconds=ping_s)
    return out


async def write_history(
    sessionmaker: async_sessionmaker[AsyncSession],
    history: HistoryStore,
    rows: list[dict[str, Any]],
    events: list[DeliveryEvent],
    positions: list[Position],
) -> Written:
    await insert_delivery_rows(sessionmaker, rows)
    for e in events:
        await history.append_event(e)
    stored = 0
    for i in range(0, len(positions), POSITION_BATCH):
        stored += await history.append_positions(positions[i : i + POSITION_BATCH])
    return Written(len(rows), len(events), stored)


async def generate(
    sessionmaker: async_sessionmaker[AsyncSession],
    history: HistoryStore,
    org: uuid.UUID,
    fleet: list[FleetVehicle],
    days: list[date],
    timezone: str,
    *,
    stops: int = 12,
    ping_s: float = 30.0,
    seed: int = 7,
) -> Written:
    """Write `days` of history for `fleet`, one vehicle-day at a time (bounded memory)."""
    rng = random.Random(seed)
    total = Written()
    for day in days:
        for v in fleet:
            w = await write_history(
                sessionmaker, history, *plan_vehicle_day(org, v, day, timezone, stops, ping_s, rng)
            )
            total.deliveries += w.deliveries
            total.events += w.events
            total.positions += w.positions
    return total
