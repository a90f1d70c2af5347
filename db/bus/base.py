"""Cache and bus interface: KV cache, latest positions (GEO), pub/sub fan-out and rate limits.

Redis in production; in-process structures as the embedded default, which only reach the same
process (DESIGN.md "Consistency rules"). Values crossing the interface are JSON-compatible dicts
or raw bytes, so both implementations behave the same: `CheckedCacheBus` makes every check and
encoding once for both, and leaves them only the storing, searching, delivering and counting.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, NamedTuple, Protocol
from uuid import UUID

from domain.geo import LatLon

# Redis GEO stores Web-Mercator-safe latitudes only; the in-process store refuses the same range.
GEO_MAX_LAT = 85.05112878


class Nearby(NamedTuple):
    vehicle_id: UUID
    distance_m: float


class LatestItem(NamedTuple):
    vehicle_id: UUID
    lat: float
    lon: float
    data: dict[str, Any] | bytes  # bytes: already the compact JSON of an object (`encode_json`)


class Message(NamedTuple):
    channel: str
    data: dict[str, Any]


class RawMessage(NamedTuple):
    """A message as published: the compact JSON of an object, not decoded (`subscribe_raw`)."""

    channel: str
    payload: bytes


class RateDecision(NamedTuple):
    allowed: bool
    retry_after_seconds: float


Subscription = AsyncIterator[Message]
RawSubscription = AsyncIterator[RawMessage]


def encode_json(value: dict[str, Any]) -> bytes:
    """Compact JSON; raises TypeError/ValueError for what would not round-trip."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a dict, got {type(value).__name__}")
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def latest_payload(data: dict[str, Any] | bytes) -> bytes:
    """A latest position's stored form: `LatestItem.data` encoded, unless it already is."""
    return data if isinstance(data, bytes) else encode_json(data)


def check_ttl(ttl_seconds: float | None) -> None:
    if ttl_seconds is not None and not (math.isfinite(ttl_seconds) and ttl_seconds > 0):
        raise ValueError("ttl_seconds must be a positive number or None")


def check_point(lat: float, lon: float) -> None:
    LatLon(lat, lon)
    if abs(lat) > GEO_MAX_LAT:
        raise ValueError(f"latitude {lat} is outside ±{GEO_MAX_LAT} (GEO index limit)")


def check_nearby(lat: float, lon: float, radius_m: float, limit: int) -> None:
    check_point(lat, lon)
    if not (math.isfinite(radius_m) and radius_m > 0):
        raise ValueError("radius_m must be a positive number")
    if limit < 1:
        raise ValueError("limit must be >= 1")


def check_rate(limit: int, window_seconds: float) -> None:
    if limit < 1:
        raise ValueError("limit must be >= 1")
    if not (math.isfinite(window_seconds) and window_seconds > 0):
        raise ValueError("window_seconds must be a positive number")


def check_channels(channels: tuple[str, ...]) -> None:
    if not channels:
        raise ValueError("subscribe needs at least one channel")
    if any(not isinstance(c, str) or not c for c in channels):
        raise ValueError("channels must be non-empty strings")


class KeyValueCache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        """Store the value; with a TTL it disappears after that many seconds."""
        ...

    async def delete(self, key: str) -> None: ...


class LatestPositions(Protocol):
    async def set_latest(
        self, org_id: UUID, vehicle_id: UUID, lat: float, lon: float, data: dict[str, Any]
    ) -> None:
        """Record the vehicle's latest position; the caller decides whether it is newer."""
        ...

    async def set_latest_many(self, org_id: UUID, items: Sequence[LatestItem]) -> None:
        """set_latest for many vehicles of one organization in one round trip (live ingest)."""
        ...

    async def get_latest(self, org_id: UUID, vehicle_id: UUID) -> dict[str, Any] | None: ...

    async def get_latest_many(self, org_id: UUID, vehicle_ids: Sequence[UUID]) -> list[dict[str, Any] | None]:
        """get_latest for many vehicles of one organization in one round trip, in order."""
        ...

    async def nearby(
        self, org_id: UUID, lat: float, lon: float, radius_m: float, limit: int = 50
    ) -> list[Nearby]:
        """Vehicles of the organization within radius_m, nearest first, at most limit."""
        ...


class Bus(Protocol):
    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        """Fan out to current subscribers; never waits for a slow one."""
        ...

    async def publish_raw(self, channel: str, payload: bytes) -> None:
        """publish() of a message already encoded: `payload` must be the compact JSON of an object, as
        `encode_json` makes it (the socket server's position stream builds it once, without a dict)."""
        ...

    def subscribe(self, *channels: str) -> AbstractAsyncContextManager[Subscription]:
        """Messages published after entering the context, as (channel, data)."""
        ...

    def subscribe_raw(self, *channels: str) -> AbstractAsyncContextManager[RawSubscription]:
        """subscribe(), but each message as published (channel, payload bytes), not decoded: for a
        subscriber that forwards most messages unchanged (the socket server's fan-out)."""
        ...


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_seconds: float) -> RateDecision:
        """Count one hit in a sliding window; denied hits are not counted."""
        ...


class CacheBus(KeyValueCache, LatestPositions, Bus, RateLimiter, Protocol):
    async def ping(self) -> None:
        """Raise if the backing service does not answer."""
        ...

    async def close(self) -> None: ...


class CheckedCacheBus(ABC):
    """The interface's public writes, searches and subscriptions with their argument checks and
    encodings, the same for every implementation; subclasses get checked, encoded values."""

    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        check_ttl(ttl_seconds)
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError("value must be bytes")
        await self._set(key, bytes(value), ttl_seconds)

    async def set_latest(
        self, org_id: UUID, vehicle_id: UUID, lat: float, lon: float, data: dict[str, Any]
    ) -> None:
        check_point(lat, lon)
        # Stored encoded: callers never share a mutable dict with the store.
        await self._set_latest(org_id, vehicle_id, lat, lon, encode_json(data))

    async def set_latest_many(self, org_id: UUID, items: Sequence[LatestItem]) -> None:
        for item in items:
            check_point(item.lat, item.lon)
        await self._set_latest_many(org_id, items)

    async def nearby(
        self, org_id: UUID, lat: float, lon: float, radius_m: float, limit: int = 50
    ) -> list[Nearby]:
        check_nearby(lat, lon, radius_m, limit)
        return await self._nearby(org_id, lat, lon, radius_m, limit)

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        await self._publish(channel, encode_json(message))

    async def publish_raw(self, channel: str, payload: bytes) -> None:
        if not isinstance(payload, bytes):
            raise TypeError("payload must be bytes")
        await self._publish_raw(channel, payload)

    def subscribe(self, *channels: str) -> AbstractAsyncContextManager[Subscription]:
        check_channels(channels)
        return self._subscription(tuple(dict.fromkeys(channels)), raw=False)

    def subscribe_raw(self, *channels: str) -> AbstractAsyncContextManager[RawSubscription]:
        check_channels(channels)
        return self._subscription(tuple(dict.fromkeys(channels)), raw=True)

    async def hit(self, key: str, limit: int, window_seconds: float) -> RateDecision:
        check_rate(limit, window_seconds)
        return await self._hit(key, limit, window_seconds)

    @abstractmethod
    async def _set(self, key: str, value: bytes, ttl_seconds: float | None) -> None: ...

    @abstractmethod
    async def _set_latest(
        self, org_id: UUID, vehicle_id: UUID, lat: float, lon: float, payload: bytes
    ) -> None:
        """Store one latest position, its data already the compact JSON of an object."""

    @abstractmethod
    async def _set_latest_many(self, org_id: UUID, items: Sequence[LatestItem]) -> None:
        """Store checked points; each item's data still as given (`latest_payload` encodes it)."""

    @abstractmethod
    async def _nearby(
        self, org_id: UUID, lat: float, lon: float, radius_m: float, limit: int
    ) -> list[Nearby]: ...

    @abstractmethod
    async def _publish(self, channel: str, payload: bytes) -> None:
        """Fan out the compact JSON of an object."""

    @abstractmethod
    async def _publish_raw(self, channel: str, payload: bytes) -> None:
        """Fan out a caller's bytes (meant to be the compact JSON of an object)."""

    @abstractmethod
    def _subscription(self, channels: tuple[str, ...], *, raw: bool) -> AbstractAsyncContextManager[Any]:
        """Subscribe to distinct channels: Messages, or RawMessages when `raw`."""

    @abstractmethod
    async def _hit(self, key: str, limit: int, window_seconds: float) -> RateDecision: ...
