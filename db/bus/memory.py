"""In-process cache and bus: the embedded default. Reaches only the current process."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar
from uuid import UUID

from db.bus.base import CheckedCacheBus, LatestItem, Message, Nearby, RateDecision, RawMessage, latest_payload
from domain.geo import LatLon, haversine_m

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 1000
_SWEEP_EVERY = 1024  # writes between purges of expired keys, so memory stays bounded without a task


M = TypeVar("M", Message, RawMessage)


class _Subscriber(Generic[M]):
    """One subscription: a bounded queue that drops its oldest message rather than block publish."""

    def __init__(self, maxsize: int, *, raw: bool = False) -> None:
        self.queue: asyncio.Queue[M | None] = asyncio.Queue(maxsize)
        self.raw = raw  # wants RawMessage (subscribe_raw), not Message
        self.dropped = 0
        self.closed = False

    def offer(self, item: M) -> None:
        if self.closed:
            return
        self._put(item)

    def _put(self, item: M | None) -> None:
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()
                self.dropped += 1

    def end(self) -> None:
        self.closed = True
        self._put(None)  # wakes a consumer waiting in __anext__

    def __aiter__(self) -> _Subscriber[M]:
        return self

    async def __anext__(self) -> M:
        if self.closed:
            raise StopAsyncIteration
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        return item


class MemoryCacheBus(CheckedCacheBus):
    def __init__(
        self, *, queue_size: int = DEFAULT_QUEUE_SIZE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self._queue_size = queue_size
        self._clock = clock
        self._kv: dict[str, tuple[bytes, float | None]] = {}
        self._writes = 0
        self._latest: dict[UUID, dict[UUID, tuple[float, float, bytes]]] = defaultdict(dict)
        self._subscribers: dict[str, set[_Subscriber[Any]]] = defaultdict(set)
        # key -> (window of the latest hit, timestamps of counted hits inside it)
        self._hits: dict[str, tuple[float, deque[float]]] = {}

    # KV cache -----------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        entry = self._kv.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if expires_at is not None and expires_at <= self._clock():
            del self._kv[key]
            return None
        return value

    async def _set(self, key: str, value: bytes, ttl_seconds: float | None) -> None:
        expires_at = None if ttl_seconds is None else self._clock() + ttl_seconds
        self._kv[key] = (value, expires_at)
        self._tick()

    async def delete(self, key: str) -> None:
        self._kv.pop(key, None)

    def _tick(self) -> None:
        self._writes += 1
        if self._writes % _SWEEP_EVERY:
            return
        now = self._clock()
        for key in [k for k, (_, exp) in self._kv.items() if exp is not None and exp <= now]:
            del self._kv[key]
        for key in [k for k, (window, hits) in self._hits.items() if not hits or hits[-1] <= now - window]:
            del self._hits[key]

    # Latest positions ---------------------------------------------------------------------

    async def _set_latest(
        self, org_id: UUID, vehicle_id: UUID, lat: float, lon: float, payload: bytes
    ) -> None:
        self._latest[org_id][vehicle_id] = (lat, lon, payload)

    async def _set_latest_many(self, org_id: UUID, items: Sequence[LatestItem]) -> None:
        latest = self._latest[org_id]
        for item in items:
            payload = latest_payload(item.data)
            if not isinstance(json.loads(payload), dict):  # what Redis would store, checked like it
                raise TypeError("latest position data must be a JSON object")
            latest[item.vehicle_id] = (item.lat, item.lon, payload)

    async def get_latest(self, org_id: UUID, vehicle_id: UUID) -> dict[str, Any] | None:
        entry = self._latest.get(org_id, {}).get(vehicle_id)
        return None if entry is None else dict(json.loads(entry[2]))

    async def get_latest_many(self, org_id: UUID, vehicle_ids: Sequence[UUID]) -> list[dict[str, Any] | None]:
        return [await self.get_latest(org_id, vehicle_id) for vehicle_id in vehicle_ids]

    async def _nearby(
        self, org_id: UUID, lat: float, lon: float, radius_m: float, limit: int
    ) -> list[Nearby]:
        centre = LatLon(lat, lon)
        found = [
            Nearby(vid, haversine_m(centre, LatLon(vlat, vlon)))
            for vid, (vlat, vlon, _) in self._latest.get(org_id, {}).items()
        ]
        return sorted((n for n in found if n.distance_m <= radius_m), key=lambda n: n.distance_m)[:limit]

    # Pub/sub ------------------------------------------------------------------------------

    async def _publish_raw(self, channel: str, payload: bytes) -> None:
        if not isinstance(json.loads(payload), dict):
            raise TypeError("a message is a JSON object")
        await self._publish(channel, payload)

    async def _publish(self, channel: str, payload: bytes) -> None:
        for subscriber in list(self._subscribers.get(channel, ())):
            # Each subscriber decodes its own copy, as if it had come over the wire.
            if subscriber.raw:
                subscriber.offer(RawMessage(channel, payload))
            else:
                subscriber.offer(Message(channel, json.loads(payload)))

    @asynccontextmanager
    async def _subscription(self, channels: tuple[str, ...], *, raw: bool) -> AsyncIterator[_Subscriber[Any]]:
        subscriber: _Subscriber[Any] = _Subscriber(self._queue_size, raw=raw)
        for channel in channels:
            self._subscribers[channel].add(subscriber)
        try:
            yield subscriber
        finally:
            for channel in channels:
                members = self._subscribers.get(channel)
                if members is not None:
                    members.discard(subscriber)
                    if not members:
                        del self._subscribers[channel]
            if subscriber.dropped:
                log.warning(
                    "slow subscriber on %s dropped %d messages", ",".join(channels), subscriber.dropped
                )

    # Rate limits --------------------------------------------------------------------------

    async def _hit(self, key: str, limit: int, window_seconds: float) -> RateDecision:
        now = self._clock()
        hits = self._hits[key][1] if key in self._hits else deque()
        self._hits[key] = (window_seconds, hits)
        self._tick()
        while hits and hits[0] <= now - window_seconds:
            hits.popleft()
        if len(hits) < limit:
            hits.append(now)
            return RateDecision(True, 0.0)
        # Allowed again once the oldest hit in the window leaves it.
        return RateDecision(False, max(hits[0] + window_seconds - now, 1e-3))

    # Lifecycle ----------------------------------------------------------------------------

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        """End every open subscription's iteration."""
        for subscriber in {s for members in self._subscribers.values() for s in members}:
            subscriber.end()
        self._subscribers.clear()
