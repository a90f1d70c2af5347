"""Chunked reads for one organization-day: deliveries from the projection (keyset pages), their
event logs and each vehicle's positions from the history store (pages of at most MAX_QUERY_LIMIT).
Nothing here holds more than one page plus what the caller keeps."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.history.base import MAX_QUERY_LIMIT, HistoryStore
from db.repositories.analytics import deliveries_changed_between, vehicle_capacities

DELIVERY_CHUNK = 500
EVENT_CONCURRENCY = 16
EVENT_TYPES = frozenset(
    {
        "assigned",
        "reassigned",
        "picked_up",
        "out_for_delivery",
        "arrived",
        "delivered",
        "failed",
        "returned",
        "cancelled",
    }
)


@dataclass(frozen=True)
class DeliveryFacts:
    """What the KPIs need of one delivery (projection row plus the parts of its state)."""

    delivery_id: str
    vehicle_id: str | None
    driver_id: str | None
    depot_id: str | None
    window_start: datetime | None
    window_end: datetime | None
    units: float
    weight_kg: float
    volume_m3: float


@dataclass(frozen=True)
class VehicleInfo:
    vehicle_id: str
    depot_id: str | None
    capacity_units: float | None
    capacity_weight_kg: float | None
    capacity_volume_m3: float | None


def _facts(row: Any) -> DeliveryFacts:
    spec = (row.state or {}).get("spec") or {}
    size = spec.get("size") or {}
    return DeliveryFacts(
        delivery_id=str(row.id),
        vehicle_id=str(row.vehicle_id) if row.vehicle_id else None,
        driver_id=str(row.driver_id) if row.driver_id else None,
        depot_id=spec.get("depot_id"),
        window_start=row.window_start,
        window_end=row.window_end,
        units=float(size.get("units") or 0),
        weight_kg=float(size.get("weight_kg") or 0),
        volume_m3=float(size.get("volume_m3") or 0),
    )


async def delivery_chunks(
    sessionmaker: async_sessionmaker[AsyncSession], org: uuid.UUID, start: datetime, end: datetime
) -> AsyncIterator[list[DeliveryFacts]]:
    """Deliveries that may have an event in [start, end), a keyset page (a short session) at a time."""
    after: uuid.UUID | None = None
    while True:
        async with sessionmaker() as session:
            rows = await deliveries_changed_between(session, org, start, end, after, DELIVERY_CHUNK)
        if not rows:
            return
        yield [_facts(r) for r in rows]
        after = rows[-1].id


async def event_rows(
    history: HistoryStore, org: uuid.UUID, delivery_ids: Sequence[str]
) -> list[tuple[str, str, datetime, str | None, str | None, str | None]]:
    """(delivery_id, type, occurred_at, reason, vehicle_id, driver_id) of the events the KPIs use."""
    gate = asyncio.Semaphore(EVENT_CONCURRENCY)

    async def one(delivery_id: str) -> list[tuple[str, str, datetime, str | None, str | None, str | None]]:
        async with gate:
            events = await history.events(org, uuid.UUID(delivery_id))
        return [
            (
                delivery_id,
                e.type,
                e.occurred_at,
                e.data.get("reason"),
                e.data.get("vehicle_id"),
                e.data.get("driver_id"),
            )
            for e in events
            if e.type in EVENT_TYPES
        ]

    out: list[tuple[str, str, datetime, str | None, str | None, str | None]] = []
    for rows in await asyncio.gather(*(one(d) for d in delivery_ids)):
        out.extend(rows)
    return out


@dataclass
class Track:
    """One vehicle's fixes in a time range as arrays (seconds since the epoch, degrees, metres)."""

    t: np.ndarray
    seq: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    accuracy: np.ndarray
    drivers: list[str | None]


async def vehicle_track(
    history: HistoryStore, org: uuid.UUID, vehicle: uuid.UUID, start: datetime, end: datetime
) -> Track:
    parts: list[np.ndarray] = []
    drivers: list[str | None] = []
    seen: set[tuple[datetime, int]] = set()
    since = start
    while since < end:
        page = await history.positions(org, vehicle, since, end, limit=MAX_QUERY_LIMIT)
        fresh = [p for p in page if (p.recorded_at, p.seq) not in seen]
        if fresh:
            parts.append(
                np.array(
                    [
                        (
                            p.recorded_at.timestamp(),
                            p.seq,
                            p.lat,
                            p.lon,
                            np.nan if p.accuracy_m is None else p.accuracy_m,
                        )
                        for p in fresh
                    ],
                    dtype=float,
                )
            )
            drivers.extend(str(p.driver_id) if p.driver_id else None for p in fresh)
        if len(page) < MAX_QUERY_LIMIT:
            break
        last = page[-1].recorded_at
        # `since` is inclusive: fixes at the page's last instant come again and are skipped by key.
        seen = {(p.recorded_at, p.seq) for p in page if p.recorded_at == last}
        since = last if last > since else last + timedelta(microseconds=1)
    data = np.concatenate(parts) if parts else np.empty((0, 5))
    return Track(data[:, 0], data[:, 1], data[:, 2], data[:, 3], data[:, 4], drivers)


async def vehicles(session: AsyncSession, org: uuid.UUID) -> list[VehicleInfo]:
    rows = await vehicle_capacities(session, org)
    return [VehicleInfo(str(v), str(d) if d else None, u, w, m) for v, d, u, w, m in rows]
