"""CacheBus contract: the same tests for every backend (see conftest.py for which ran)."""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest

from db.bus import CacheBus, MemoryCacheBus, Message, RawMessage, RawSubscription, RedisCacheBus, Subscription

RECEIVE_TIMEOUT_S = 2.0
METRES_PER_DEG_LAT = 111_194.93  # haversine with the mean earth radius; Redis differs by < 0.03%


async def receive(sub: Subscription) -> Message:
    return await asyncio.wait_for(anext(sub), RECEIVE_TIMEOUT_S)


async def receive_raw(sub: RawSubscription) -> RawMessage:
    return await asyncio.wait_for(anext(sub), RECEIVE_TIMEOUT_S)


def north_of(lat: float, metres: float) -> float:
    return lat + metres / METRES_PER_DEG_LAT


# KV cache ------------------------------------------------------------------------------------


async def test_get_set_delete(cache_bus: CacheBus) -> None:
    assert await cache_bus.get("missing") is None
    await cache_bus.set("k", b"\x00one")
    assert await cache_bus.get("k") == b"\x00one"
    await cache_bus.set("k", b"two")
    assert await cache_bus.get("k") == b"two"
    await cache_bus.delete("k")
    assert await cache_bus.get("k") is None
    await cache_bus.delete("k")  # deleting a missing key is fine


async def test_ttl_expiry(cache_bus: CacheBus) -> None:
    await cache_bus.set("short", b"v", ttl_seconds=0.2)
    await cache_bus.set("forever", b"v")
    assert await cache_bus.get("short") == b"v"
    await asyncio.sleep(0.4)
    assert await cache_bus.get("short") is None
    assert await cache_bus.get("forever") == b"v"
    # Setting again without a TTL makes the key permanent.
    await cache_bus.set("short", b"v2", ttl_seconds=0.2)
    await cache_bus.set("short", b"v3")
    await asyncio.sleep(0.3)
    assert await cache_bus.get("short") == b"v3"


@pytest.mark.parametrize("ttl", [0, -1.0, math.inf, math.nan])
async def test_bad_ttl_is_rejected(cache_bus: CacheBus, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        await cache_bus.set("k", b"v", ttl_seconds=ttl)


# Latest positions ----------------------------------------------------------------------------


async def test_latest_round_trip_and_org_scope(cache_bus: CacheBus) -> None:
    org, other_org, vehicle = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert await cache_bus.get_latest(org, vehicle) is None
    await cache_bus.set_latest(org, vehicle, 52.5, 13.4, {"seq": 1, "speed_mps": 3.5, "tags": ["a"]})
    await cache_bus.set_latest(org, vehicle, 52.6, 13.5, {"seq": 2, "speed_mps": None})

    assert await cache_bus.get_latest(org, vehicle) == {"seq": 2, "speed_mps": None}
    assert await cache_bus.get_latest(other_org, vehicle) is None
    assert await cache_bus.nearby(other_org, 52.6, 13.5, 10_000) == []


async def test_set_latest_many_is_set_latest_for_each(cache_bus: CacheBus) -> None:
    from db.bus import LatestItem

    org, a, b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await cache_bus.set_latest_many(org, [])
    await cache_bus.set_latest_many(
        org, [LatestItem(a, 52.5, 13.4, {"seq": 1}), LatestItem(b, 52.5001, 13.4, {"seq": 7})]
    )
    assert await cache_bus.get_latest(org, a) == {"seq": 1}
    assert await cache_bus.get_latest(org, b) == {"seq": 7}
    assert [n.vehicle_id for n in await cache_bus.nearby(org, 52.5, 13.4, 100)] == [a, b]
    with pytest.raises(ValueError, match="latitude"):
        await cache_bus.set_latest_many(org, [LatestItem(a, 89.0, 0.0, {})])


async def test_nearby_sorted_within_radius_and_limited(cache_bus: CacheBus) -> None:
    org, other_org = uuid.uuid4(), uuid.uuid4()
    lat, lon = 48.1351, 11.5820
    far, mid, near = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for vehicle, metres in ((far, 800.0), (near, 100.0), (mid, 450.0)):
        await cache_bus.set_latest(org, vehicle, north_of(lat, metres), lon, {"m": metres})
    await cache_bus.set_latest(org, uuid.uuid4(), north_of(lat, 2_000.0), lon, {})  # outside the radius
    await cache_bus.set_latest(other_org, uuid.uuid4(), lat, lon, {})  # another org, right here

    found = await cache_bus.nearby(org, lat, lon, 1_000.0, limit=10)
    assert [n.vehicle_id for n in found] == [near, mid, far]
    for n, expected in zip(found, (100.0, 450.0, 800.0), strict=True):
        assert n.distance_m == pytest.approx(expected, rel=5e-3, abs=1.0)

    assert [n.vehicle_id for n in await cache_bus.nearby(org, lat, lon, 1_000.0, limit=2)] == [near, mid]
    assert await cache_bus.nearby(org, lat, lon, 50.0) == []


async def test_nearby_across_the_antimeridian(cache_bus: CacheBus) -> None:
    org, east, west, edge = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await cache_bus.set_latest(org, east, 0.0, 179.999, {})
    await cache_bus.set_latest(org, west, 0.0, -179.998, {})
    found = await cache_bus.nearby(org, 0.0, 180.0, 1_000.0)
    assert [n.vehicle_id for n in found] == [east, west]
    assert found[1].distance_m == pytest.approx(222.4, rel=5e-3)

    await cache_bus.set_latest(org, edge, 0.0, 180.0, {})
    found = await cache_bus.nearby(org, 0.0, -179.9996, 1_000.0)
    assert [n.vehicle_id for n in found] == [edge, east, west]


async def test_latest_rejects_what_a_geo_index_cannot_hold(cache_bus: CacheBus) -> None:
    org, vehicle = uuid.uuid4(), uuid.uuid4()
    with pytest.raises(ValueError, match="latitude"):
        await cache_bus.set_latest(org, vehicle, 89.0, 0.0, {})
    with pytest.raises(TypeError):
        await cache_bus.set_latest(org, vehicle, 1.0, 1.0, {"id": uuid.uuid4()})
    with pytest.raises(ValueError, match="radius"):
        await cache_bus.nearby(org, 1.0, 1.0, 0.0)
    assert await cache_bus.get_latest(org, vehicle) is None


async def test_latest_many_takes_encoded_data_and_reads_in_one_call(cache_bus: CacheBus) -> None:
    from db.bus import LatestItem

    org, a, b, missing = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert await cache_bus.get_latest_many(org, []) == []
    await cache_bus.set_latest_many(
        org, [LatestItem(a, 52.5, 13.4, b'{"seq":1,"lat":52.5}'), LatestItem(b, 52.6, 13.4, {"seq": 2})]
    )
    assert await cache_bus.get_latest_many(org, [b, missing, a]) == [
        {"seq": 2},
        None,
        {"seq": 1, "lat": 52.5},
    ]
    assert await cache_bus.get_latest_many(uuid.uuid4(), [a]) == [None]


# Pub/sub -------------------------------------------------------------------------------------


async def test_publish_reaches_every_subscriber_of_the_channel_only(cache_bus: CacheBus) -> None:
    async with (
        cache_bus.subscribe("org:a") as first,
        cache_bus.subscribe("org:a", "org:c") as second,
        cache_bus.subscribe("org:b") as other,
    ):
        await cache_bus.publish("org:a", {"n": 1, "nested": {"x": [1, 2]}})
        await cache_bus.publish("org:c", {"n": 2})
        await cache_bus.publish("org:b", {"n": 3})

        assert await receive(first) == Message("org:a", {"n": 1, "nested": {"x": [1, 2]}})
        assert await receive(second) == ("org:a", {"n": 1, "nested": {"x": [1, 2]}})
        assert await receive(second) == ("org:c", {"n": 2})
        # org:b saw neither org:a nor org:c: its first message is its own.
        assert await receive(other) == ("org:b", {"n": 3})

        await cache_bus.publish("org:a", {"n": 4})
        assert await receive(first) == ("org:a", {"n": 4})  # org:c did not reach `first`


async def test_raw_publish_and_subscribe_carry_the_bytes(cache_bus: CacheBus) -> None:
    async with cache_bus.subscribe_raw("raw:a") as raw, cache_bus.subscribe("raw:a") as decoded:
        await cache_bus.publish_raw("raw:a", b'{"type":"positions","positions":[{"seq":1}]}')
        await cache_bus.publish("raw:a", {"n": 2})
        assert await receive_raw(raw) == RawMessage("raw:a", b'{"type":"positions","positions":[{"seq":1}]}')
        assert await receive_raw(raw) == RawMessage("raw:a", b'{"n":2}')  # compact, as `encode_json`
        assert await receive(decoded) == Message("raw:a", {"type": "positions", "positions": [{"seq": 1}]})
        assert await receive(decoded) == Message("raw:a", {"n": 2})
    with pytest.raises(TypeError):
        await cache_bus.publish_raw("raw:a", '{"n": 1}')  # type: ignore[arg-type]


async def test_messages_arrive_in_publish_order(cache_bus: CacheBus) -> None:
    async with cache_bus.subscribe("seq") as sub:
        for i in range(20):
            await cache_bus.publish("seq", {"i": i})
        assert [(await receive(sub)).data["i"] for _ in range(20)] == list(range(20))


async def test_publish_without_subscribers_and_after_unsubscribe(cache_bus: CacheBus) -> None:
    await cache_bus.publish("nobody", {"x": 1})
    async with cache_bus.subscribe("later") as sub:
        pass
    await cache_bus.publish("later", {"x": 2})
    async with cache_bus.subscribe("later") as sub:
        await cache_bus.publish("later", {"x": 3})
        assert await receive(sub) == ("later", {"x": 3})  # nothing from before this subscription


async def test_slow_subscriber_does_not_block_the_publisher(cache_bus: CacheBus) -> None:
    count = 200  # well past the memory backend's queue of 64 (see conftest)
    async with cache_bus.subscribe("busy") as slow:

        async def publish_all() -> None:
            for i in range(count):
                await cache_bus.publish("busy", {"i": i})

        await asyncio.wait_for(publish_all(), timeout=5.0)
        seen: list[int] = []
        while not seen or seen[-1] != count - 1:
            seen.append((await receive(slow)).data["i"])
    # Whatever a backend had to drop, the newest message arrives and order holds.
    assert seen == sorted(set(seen))
    assert seen[-1] == count - 1


def test_subscribe_needs_a_channel(cache_bus: CacheBus) -> None:
    with pytest.raises(ValueError, match="channel"):
        cache_bus.subscribe()


# Rate limits ---------------------------------------------------------------------------------


async def test_rate_limit_allows_then_denies_with_retry_after(cache_bus: CacheBus) -> None:
    window = 0.5
    decisions = [await cache_bus.hit("login:alice", 3, window) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, True]
    assert all(d.retry_after_seconds == 0.0 for d in decisions)

    denied = await cache_bus.hit("login:alice", 3, window)
    assert denied.allowed is False
    assert 0.0 < denied.retry_after_seconds <= window
    allowed, retry_after = await cache_bus.hit("login:alice", 3, window)  # a plain tuple too
    assert (allowed, retry_after > 0) == (False, True)

    # Keys are independent.
    assert (await cache_bus.hit("login:bob", 3, window)).allowed is True

    # Once the oldest hit leaves the window, exactly one more is allowed.
    await asyncio.sleep(denied.retry_after_seconds + 0.05)
    assert (await cache_bus.hit("login:alice", 3, window)).allowed is True


async def test_rate_limit_window_slides(cache_bus: CacheBus) -> None:
    window = 0.6
    assert (await cache_bus.hit("k", 2, window)).allowed
    await asyncio.sleep(0.35)
    assert (await cache_bus.hit("k", 2, window)).allowed
    first_denial = await cache_bus.hit("k", 2, window)
    assert not first_denial.allowed
    # Only the first hit has left after ~0.25 s more; the second still counts.
    assert first_denial.retry_after_seconds < window - 0.3
    await asyncio.sleep(first_denial.retry_after_seconds + 0.05)
    assert (await cache_bus.hit("k", 2, window)).allowed
    assert not (await cache_bus.hit("k", 2, window)).allowed


async def test_concurrent_hits_never_over_admit(cache_bus: CacheBus) -> None:
    results = await asyncio.gather(*(cache_bus.hit("burst", 5, 10.0) for _ in range(25)))
    assert sum(r.allowed for r in results) == 5


async def test_ping(cache_bus: CacheBus) -> None:
    await cache_bus.ping()


# Backend-specific behaviour ------------------------------------------------------------------


async def test_memory_drops_oldest_for_a_full_subscriber() -> None:
    bus = MemoryCacheBus(queue_size=4)
    async with bus.subscribe("c") as sub:
        for i in range(10):
            await bus.publish("c", {"i": i})
        assert [(await receive(sub)).data["i"] for _ in range(4)] == [6, 7, 8, 9]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(sub), 0.05)
    await bus.close()


async def test_memory_close_ends_open_subscriptions() -> None:
    bus = MemoryCacheBus()
    async with bus.subscribe("c") as sub:
        waiter = asyncio.ensure_future(anext(sub))
        await asyncio.sleep(0)
        await bus.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiter, RECEIVE_TIMEOUT_S)


def test_redis_keys_carry_the_prefix() -> None:
    bus = RedisCacheBus("redis://127.0.0.1:6379/0", prefix="p1:")  # no I/O until first use
    assert bus._key("kv", "a") == "p1:kv:a"
