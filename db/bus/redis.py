"""Cache and bus on Redis: shared by every process and replica. All keys carry the prefix."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from db.bus.base import CheckedCacheBus, LatestItem, Message, Nearby, RateDecision, RawMessage, latest_payload

log = logging.getLogger(__name__)

SUBSCRIBE_CONFIRM_TIMEOUT_S = 5.0

# Sliding-window log in a sorted set, one member per counted hit, scored in microseconds of the
# Redis server clock (one clock for every app host). Trim, count and add run atomically in the
# script, so concurrent callers can never over-admit. Returns {allowed, retry_after_us}.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local retry = tonumber(oldest[2]) + window - now
if retry < 1 then retry = 1 end
return {0, retry}
"""


def _as_bytes(value: Any) -> bytes:
    """Replies are bytes (no decode_responses); the client's types also allow str."""
    return value.encode() if isinstance(value, str) else bytes(value)


def _geo_lon(lon: float) -> float:
    """Longitude 180 as -180: the same meridian, but Redis 7 GEOSEARCH misses neighbours across the
    antimeridian from (and of) points stored or searched at exactly +180."""
    return -180.0 if lon == 180.0 else lon


def _nearby_row(row: Any) -> Nearby:
    """GEOSEARCH … WITHDIST rows are [member, distance] (the client types every option's shape)."""
    member, distance = row
    return Nearby(UUID(_as_bytes(member).decode()), float(distance))


class RedisCacheBus(CheckedCacheBus):
    def __init__(self, url: str, *, prefix: str = "waybill:") -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url)
        self._prefix = prefix
        self._hit_script = self._redis.register_script(_SLIDING_WINDOW)

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}:{name}"

    # KV cache -----------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(self._key("kv", key))
        return _as_bytes(value) if value is not None else None

    async def _set(self, key: str, value: bytes, ttl_seconds: float | None) -> None:
        px = None if ttl_seconds is None else max(1, round(ttl_seconds * 1000))
        await self._redis.set(self._key("kv", key), value, px=px)

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._key("kv", key))

    # Latest positions: a GEO set per organization plus a hash of the JSON payloads --------

    async def _set_latest(
        self, org_id: UUID, vehicle_id: UUID, lat: float, lon: float, payload: bytes
    ) -> None:
        member = str(vehicle_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.geoadd(self._key("geo", str(org_id)), (_geo_lon(lon), lat, member))
            pipe.hset(self._key("latest", str(org_id)), member, payload)
            await pipe.execute()

    async def _set_latest_many(self, org_id: UUID, items: Sequence[LatestItem]) -> None:
        if not items:
            return
        geo: list[Any] = []
        for item in items:
            geo += [_geo_lon(item.lon), item.lat, str(item.vehicle_id)]
        mapping = {str(item.vehicle_id): latest_payload(item.data) for item in items}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.geoadd(self._key("geo", str(org_id)), geo)
            pipe.hset(self._key("latest", str(org_id)), mapping=mapping)  # type: ignore[arg-type]
            await pipe.execute()

    async def get_latest(self, org_id: UUID, vehicle_id: UUID) -> dict[str, Any] | None:
        raw = await self._redis.hget(self._key("latest", str(org_id)), str(vehicle_id))
        return None if raw is None else dict(json.loads(raw))

    async def get_latest_many(self, org_id: UUID, vehicle_ids: Sequence[UUID]) -> list[dict[str, Any] | None]:
        if not vehicle_ids:
            return []
        rows = await self._redis.hmget(self._key("latest", str(org_id)), [str(v) for v in vehicle_ids])
        return [None if raw is None else dict(json.loads(raw)) for raw in rows]

    async def _nearby(
        self, org_id: UUID, lat: float, lon: float, radius_m: float, limit: int
    ) -> list[Nearby]:
        rows = await self._redis.geosearch(
            self._key("geo", str(org_id)),
            longitude=_geo_lon(lon),
            latitude=lat,
            radius=radius_m,
            unit="m",
            sort="ASC",
            count=limit,
            withdist=True,
        )
        return [_nearby_row(row) for row in rows]

    # Pub/sub ------------------------------------------------------------------------------

    async def _publish(self, channel: str, payload: bytes) -> None:
        await self._redis.publish(self._key("ch", channel), payload)

    # Not checked here: subscribers drop what is not a JSON object (`_messages`).
    _publish_raw = _publish

    @asynccontextmanager
    async def _subscription(
        self, channels: tuple[str, ...], *, raw: bool
    ) -> AsyncIterator[AsyncIterator[Message] | AsyncIterator[RawMessage]]:
        async with self._redis.pubsub() as pubsub:  # unsubscribes and returns the connection on exit
            await pubsub.subscribe(*(self._key("ch", c) for c in channels))
            # SUBSCRIBE is acknowledged asynchronously; wait for every confirmation so that a
            # message published right after entering the context is not missed.
            pending = {self._key("ch", c).encode() for c in channels}
            while pending:
                msg = await pubsub.get_message(timeout=SUBSCRIBE_CONFIRM_TIMEOUT_S)
                if msg is None:
                    raise TimeoutError(f"Redis did not confirm the subscription to {sorted(pending)}")
                if msg["type"] == "subscribe":
                    pending.discard(msg["channel"])
            messages = self._raw_messages(pubsub) if raw else self._messages(pubsub)
            try:
                yield messages
            finally:
                await messages.aclose()  # finalize here, not in the garbage collector

    async def _messages(self, pubsub: PubSub) -> AsyncGenerator[Message]:
        strip = len(self._key("ch", ""))
        async for msg in pubsub.listen():
            if msg["type"] != "message":
                continue
            channel = msg["channel"].decode()[strip:]
            try:
                data = json.loads(msg["data"])
            except ValueError:
                data = None
            if not isinstance(data, dict):  # not ours: someone published raw text under our prefix
                log.warning("dropped a message that is not a JSON object on %s", channel)
                continue
            yield Message(channel, data)

    async def _raw_messages(self, pubsub: PubSub) -> AsyncGenerator[RawMessage]:
        strip = len(self._key("ch", ""))
        async for msg in pubsub.listen():
            if msg["type"] == "message":
                yield RawMessage(msg["channel"].decode()[strip:], _as_bytes(msg["data"]))

    # Rate limits --------------------------------------------------------------------------

    async def _hit(self, key: str, limit: int, window_seconds: float) -> RateDecision:
        window_us = max(1, round(window_seconds * 1_000_000))
        allowed, retry_us = await self._hit_script(
            keys=[self._key("rate", key)], args=[window_us, limit, uuid.uuid4().hex]
        )
        return RateDecision(bool(allowed), 0.0 if allowed else int(retry_us) / 1_000_000)

    # Lifecycle ----------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
