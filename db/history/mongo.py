"""History store on MongoDB: a time-series collection for positions, a regular one for events.

Dedupe of positions. Time-series collections accept no unique index, so the idempotency key
(vehicle, recorded_at, seq) lives as the `_id` of a small regular collection, `position_keys`.
A batch is written measurement-first: skip keys already recorded, insert the rest into the
time series, then insert their keys. A crash or a concurrent writer between the two inserts can
leave a duplicate measurement but never loses one (keys-first could record a key whose point was
never written, and a retry would then skip it for good). Reads drop the rare duplicate, and the
count returned is the number of keys this call inserted, so it stays exact under retries.

BSON dates keep milliseconds only, so each document also carries the exact instant in
microseconds (`t_us`, `occurred_us`): values read back equal the values written, as in SQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import BulkWriteError, CollectionInvalid, DuplicateKeyError, OperationFailure

from db.history.base import DeliveryEvent, Position, check_range, dedupe_batch, record_fields

log = logging.getLogger(__name__)

POSITIONS = "positions"
POSITION_KEYS = "position_keys"
EVENTS = "delivery_events"
DUPLICATE_KEY = 11000
NAMESPACE_EXISTS = 48
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Document = dict[str, Any]


def _to_us(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _floor_ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _position_key(p: Position) -> str:
    return f"{p.vehicle_id.hex}:{_to_us(p.recorded_at)}:{p.seq}"


def _position_doc(p: Position) -> Document:
    return {
        "recorded_at": p.recorded_at,
        "meta": {"organization_id": p.organization_id, "vehicle_id": p.vehicle_id},
        "t_us": _to_us(p.recorded_at),
        "seq": p.seq,
        "driver_id": p.driver_id,
        "location": {"type": "Point", "coordinates": [p.lon, p.lat]},
        "accuracy_m": p.accuracy_m,
        "speed_mps": p.speed_mps,
        "heading_deg": p.heading_deg,
    }


def _position_from(doc: Document) -> Position:
    lon, lat = doc["location"]["coordinates"]
    return Position(
        organization_id=doc["meta"]["organization_id"],
        vehicle_id=doc["meta"]["vehicle_id"],
        driver_id=doc.get("driver_id"),
        seq=doc["seq"],
        recorded_at=_from_us(doc["t_us"]),
        lat=lat,
        lon=lon,
        accuracy_m=doc.get("accuracy_m"),
        speed_mps=doc.get("speed_mps"),
        heading_deg=doc.get("heading_deg"),
    )


def _only_duplicates(exc: BulkWriteError) -> int:
    """Number inserted by an unordered bulk insert whose only failures are duplicate keys."""
    errors = exc.details.get("writeErrors", [])
    if any(err.get("code") != DUPLICATE_KEY for err in errors) or exc.details.get("writeConcernErrors"):
        raise exc
    return int(exc.details.get("nInserted", 0))


class MongoHistoryStore:
    def __init__(self, url: str, database: str, *, server_selection_timeout_ms: int = 5000) -> None:
        # Standard UUID encoding (binary subtype 4) and aware UTC datetimes on the way out.
        self._client: AsyncMongoClient[Document] = AsyncMongoClient(
            url,
            uuidRepresentation="standard",
            tz_aware=True,
            tzinfo=UTC,
            serverSelectionTimeoutMS=server_selection_timeout_ms,
        )
        self._db = self._client[database]
        self._positions = self._db[POSITIONS]
        self._keys = self._db[POSITION_KEYS]
        self._events = self._db[EVENTS]
        # The event log's idempotency rests on its unique index, so every operation makes sure the
        # indexes exist (once per store) instead of trusting each caller to remember.
        self._indexed = False
        self._index_lock = asyncio.Lock()

    async def _ready(self) -> None:
        if self._indexed:
            return
        async with self._index_lock:
            if not self._indexed:
                await self.ensure_indexes()
                self._indexed = True

    async def ensure_indexes(self) -> None:
        """Create collections and indexes; safe to run on every start and concurrently."""
        try:
            await self._db.create_collection(
                POSITIONS,
                timeseries={"timeField": "recorded_at", "metaField": "meta", "granularity": "seconds"},
            )
        except CollectionInvalid:
            pass
        except OperationFailure as exc:  # another process created it between the check and the create
            if exc.code != NAMESPACE_EXISTS:
                raise
        await self._positions.create_index(
            [("meta.organization_id", ASCENDING), ("meta.vehicle_id", ASCENDING), ("recorded_at", ASCENDING)],
            name="org_vehicle_time",
        )
        try:
            await self._positions.create_index([("location", "2dsphere")], name="location_2dsphere")
        except OperationFailure as exc:  # MongoDB < 6.0 has no 2dsphere on time-series measurements
            log.warning("positions: 2dsphere index not created: %s", exc)
        await self._events.create_index(
            [("workflow_id", ASCENDING), ("sequence", ASCENDING)], unique=True, name="workflow_sequence"
        )
        await self._events.create_index(
            [("organization_id", ASCENDING), ("delivery_id", ASCENDING), ("sequence", ASCENDING)],
            name="org_delivery_sequence",
        )

    async def append_positions(self, batch: Sequence[Position]) -> int:
        unique = {_position_key(p): p for p in dedupe_batch(batch)}
        if not unique:
            return 0
        await self._ready()
        known = {doc["_id"] async for doc in self._keys.find({"_id": {"$in": list(unique)}}, {"_id": 1})}
        fresh = [(key, p) for key, p in unique.items() if key not in known]
        if not fresh:
            return 0
        await self._positions.insert_many([_position_doc(p) for _, p in fresh], ordered=False)
        try:
            result = await self._keys.insert_many([{"_id": key} for key, _ in fresh], ordered=False)
        except BulkWriteError as exc:  # a concurrent writer stored some of them first
            return _only_duplicates(exc)
        return len(result.inserted_ids)

    async def positions(
        self, organization_id: UUID, vehicle_id: UUID, since: datetime, until: datetime, limit: int = 1000
    ) -> list[Position]:
        start, end = check_range(since, until, limit)
        await self._ready()
        query = {
            "meta.organization_id": organization_id,
            "meta.vehicle_id": vehicle_id,
            # The indexed ms-precision bounds narrow the scan; t_us applies the exact ones.
            "recorded_at": {"$gte": _floor_ms(start), "$lte": _floor_ms(end)},
            "t_us": {"$gte": _to_us(start), "$lt": _to_us(end)},
        }
        cursor = self._positions.find(query).sort(
            [("recorded_at", ASCENDING), ("t_us", ASCENDING), ("seq", ASCENDING)]
        )
        out: list[Position] = []
        seen: set[tuple[int, int]] = set()
        try:
            async for doc in cursor:
                key = (doc["t_us"], doc["seq"])
                if key in seen:  # the rare duplicate a crashed or racing write left behind
                    continue
                seen.add(key)
                out.append(_position_from(doc))
                if len(out) == limit:
                    break
        finally:
            await cursor.close()
        return out

    async def append_event(self, event: DeliveryEvent) -> bool:
        await self._ready()
        doc = {**record_fields(event), "occurred_us": _to_us(event.occurred_at)}
        try:
            await self._events.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def events(self, organization_id: UUID, delivery_id: UUID) -> list[DeliveryEvent]:
        await self._ready()
        cursor = self._events.find({"organization_id": organization_id, "delivery_id": delivery_id}).sort(
            [("sequence", ASCENDING), ("workflow_id", ASCENDING)]
        )
        return [
            DeliveryEvent(
                organization_id=doc["organization_id"],
                delivery_id=doc["delivery_id"],
                workflow_id=doc["workflow_id"],
                sequence=doc["sequence"],
                type=doc["type"],
                occurred_at=_from_us(doc["occurred_us"]),
                actor=doc.get("actor"),
                data=dict(doc.get("data") or {}),
            )
            async for doc in cursor
        ]

    async def ping(self) -> None:
        await self._client.admin.command("ping")

    async def close(self) -> None:
        await self._client.close()
