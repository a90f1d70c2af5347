"""History store interface: the position time series and the delivery event log.

Two implementations share this contract (DESIGN.md "Stores"): MongoDB in production, tables in the
system-of-record database as the embedded default. Both are append-only and idempotent so that
retried activities and re-sent driver batches never duplicate a point or an event.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from domain.geo import LatLon

MAX_WORKFLOW_ID_LEN = 200  # matches delivery_events.workflow_id
MAX_EVENT_TYPE_LEN = 64
MAX_ACTOR_LEN = 200
MAX_QUERY_LIMIT = 10_000


def require_utc(value: datetime, name: str) -> datetime:
    """The value converted to UTC; naive datetimes are refused (their zone is a guess)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC)")
    return value.astimezone(UTC)


def _optional_finite(value: float | None, name: str) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")


@dataclass(frozen=True, slots=True)
class Position:
    organization_id: UUID
    vehicle_id: UUID
    driver_id: UUID | None
    seq: int
    recorded_at: datetime
    lat: float
    lon: float
    accuracy_m: float | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None

    def __post_init__(self) -> None:
        # The socket server builds one per stored position: the common case (a UTC datetime, coordinates
        # in range, finite extras) is checked in a few comparisons, anything else the long way.
        at = self.recorded_at
        if type(at) is not datetime or at.tzinfo is not UTC:
            object.__setattr__(self, "recorded_at", require_utc(at, "recorded_at"))
        if self.seq < 0:
            raise ValueError("seq must be >= 0")
        lat, lon = self.lat, self.lon
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):  # NaN fails every comparison
            LatLon(lat, lon)  # raises on out-of-range or non-finite coordinates
        for value, name in (
            (self.accuracy_m, "accuracy_m"),
            (self.speed_mps, "speed_mps"),
            (self.heading_deg, "heading_deg"),
        ):
            if value is not None:
                _optional_finite(value, name)

    @property
    def key(self) -> tuple[UUID, datetime, int]:
        """The idempotency key: a client re-sending the same point maps to the same key."""
        return (self.vehicle_id, self.recorded_at, self.seq)


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    organization_id: UUID
    delivery_id: UUID
    workflow_id: str
    sequence: int
    type: str
    occurred_at: datetime
    actor: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "occurred_at", require_utc(self.occurred_at, "occurred_at"))
        if not 0 < len(self.workflow_id) <= MAX_WORKFLOW_ID_LEN:
            raise ValueError(f"workflow_id must be 1..{MAX_WORKFLOW_ID_LEN} characters")
        if not 0 < len(self.type) <= MAX_EVENT_TYPE_LEN:
            raise ValueError(f"type must be 1..{MAX_EVENT_TYPE_LEN} characters")
        if self.actor is not None and len(self.actor) > MAX_ACTOR_LEN:
            raise ValueError(f"actor must be at most {MAX_ACTOR_LEN} characters")
        if self.sequence < 0:
            raise ValueError("sequence must be >= 0")
        # Both backends store data as JSON; refuse anything that would not round-trip.
        json.dumps(self.data, allow_nan=False)


Record = TypeVar("Record", Position, DeliveryEvent)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in (Position, DeliveryEvent)
}


def record_fields(record: Position | DeliveryEvent) -> dict[str, Any]:
    """The record's fields by name, in declaration order: what a store's row or document starts from."""
    return {name: getattr(record, name) for name in _FIELD_NAMES[type(record)]}


def record_from(cls: type[Record], row: object, **overrides: Any) -> Record:
    """A record built from a stored row's same-named attributes, `overrides` in place of some."""
    values = {name: getattr(row, name) for name in _FIELD_NAMES[cls] if name not in overrides}
    return cls(**values, **overrides)


def check_range(since: datetime, until: datetime, limit: int) -> tuple[datetime, datetime]:
    """Validated [since, until) bounds in UTC."""
    start, end = require_utc(since, "since"), require_utc(until, "until")
    if end < start:
        raise ValueError("until must not be before since")
    if not 0 < limit <= MAX_QUERY_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_QUERY_LIMIT}")
    return start, end


def dedupe_batch(batch: Sequence[Position]) -> list[Position]:
    """The batch without repeats of the same key (first occurrence wins)."""
    seen: set[tuple[int, datetime, int]] = set()
    add = seen.add
    out: list[Position] = []
    for position in batch:
        if type(position) is not Position and not isinstance(position, Position):
            raise TypeError(f"expected Position, got {type(position).__name__}")
        key = (position.vehicle_id.int, position.recorded_at, position.seq)  # UUID's own hash is Python
        if key not in seen:
            add(key)
            out.append(position)
    return out


class HistoryStore(Protocol):
    async def append_positions(self, batch: Sequence[Position]) -> int:
        """Store the batch; repeats of (vehicle_id, recorded_at, seq) are ignored.

        Returns how many positions were newly stored.
        """
        ...

    async def positions(
        self, organization_id: UUID, vehicle_id: UUID, since: datetime, until: datetime, limit: int = 1000
    ) -> list[Position]:
        """Positions with since <= recorded_at < until, ordered by (recorded_at, seq)."""
        ...

    async def append_event(self, event: DeliveryEvent) -> bool:
        """Append to the event log; False (never an error) if (workflow_id, sequence) is already there."""
        ...

    async def events(self, organization_id: UUID, delivery_id: UUID) -> list[DeliveryEvent]:
        """The delivery's events ordered by sequence."""
        ...

    async def ping(self) -> None:
        """Raise if the backing service does not answer."""
        ...

    async def close(self) -> None: ...
