"""HistoryStore contract: the same tests for every backend (see conftest.py for which ran)."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from db.history import DeliveryEvent, HistoryStore, Position

T0 = datetime(2030, 5, 17, 8, 0, 0, 123456, tzinfo=UTC)  # sub-millisecond on purpose
WIDE = (T0 - timedelta(days=1), T0 + timedelta(days=1))


def pos(org: uuid.UUID, vehicle: uuid.UUID, seconds: float, seq: int, **extra: object) -> Position:
    fields: dict[str, object] = {"driver_id": None, "lat": 52.52 + seq * 1e-4, "lon": 13.405 - seconds * 1e-5}
    fields.update(extra)
    return Position(
        organization_id=org,
        vehicle_id=vehicle,
        seq=seq,
        recorded_at=T0 + timedelta(seconds=seconds),
        **fields,  # type: ignore[arg-type]
    )


def event(org: uuid.UUID, delivery: uuid.UUID, sequence: int, **extra: object) -> DeliveryEvent:
    fields: dict[str, object] = {
        "type": f"step-{sequence}",
        "actor": "user:dispatcher",
        "data": {"n": sequence, "nested": {"ok": True}, "list": [1, "two"]},
        "occurred_at": T0 + timedelta(minutes=sequence),
    }
    fields.update(extra)
    return DeliveryEvent(
        organization_id=org,
        delivery_id=delivery,
        workflow_id=f"delivery-{delivery}",
        sequence=sequence,
        **fields,  # type: ignore[arg-type]
    )


def ids() -> tuple[uuid.UUID, uuid.UUID]:
    return uuid.uuid4(), uuid.uuid4()


# Positions -----------------------------------------------------------------------------------


async def test_append_positions_is_idempotent(history: HistoryStore) -> None:
    org, vehicle = ids()
    batch = [pos(org, vehicle, s, s) for s in range(3)]

    assert await history.append_positions(batch) == 3
    assert await history.append_positions(batch) == 0
    assert await history.append_positions([*batch[1:], pos(org, vehicle, 3, 3)]) == 1
    # A repeat inside one batch is stored once.
    assert await history.append_positions([pos(org, vehicle, 4, 4), pos(org, vehicle, 4, 4)]) == 1
    assert await history.append_positions([]) == 0

    stored = await history.positions(org, vehicle, *WIDE)
    assert [p.seq for p in stored] == [0, 1, 2, 3, 4]


async def test_same_time_different_seq_is_a_different_point(history: HistoryStore) -> None:
    org, vehicle = ids()
    assert await history.append_positions([pos(org, vehicle, 0, 1), pos(org, vehicle, 0, 2)]) == 2
    assert len(await history.positions(org, vehicle, *WIDE)) == 2


async def test_positions_round_trip_exactly(history: HistoryStore) -> None:
    org, vehicle = ids()
    driver = uuid.uuid4()
    full = pos(org, vehicle, 1.5, 7, driver_id=driver, accuracy_m=4.5, speed_mps=12.25, heading_deg=271.0)
    bare = pos(org, vehicle, 2.000001, 8)
    await history.append_positions([full, bare])

    assert await history.positions(org, vehicle, *WIDE) == [full, bare]
    assert full.recorded_at.microsecond == 623456  # the store kept sub-millisecond precision


async def test_out_of_order_inserts_come_back_ordered(history: HistoryStore) -> None:
    org, vehicle = ids()
    points = [pos(org, vehicle, s, q) for s in (0, 10, 20, 30) for q in (2, 0, 1)]
    shuffled = points[:]
    random.Random(7).shuffle(shuffled)
    for start in range(0, len(shuffled), 5):  # several batches, each out of order
        await history.append_positions(shuffled[start : start + 5])

    got = await history.positions(org, vehicle, *WIDE)
    assert [(p.recorded_at, p.seq) for p in got] == sorted((p.recorded_at, p.seq) for p in points)
    assert got[0] == pos(org, vehicle, 0, 0)


async def test_positions_range_is_half_open_and_limited(history: HistoryStore) -> None:
    org, vehicle = ids()
    await history.append_positions([pos(org, vehicle, s, s) for s in range(10)])

    got = await history.positions(org, vehicle, T0 + timedelta(seconds=2), T0 + timedelta(seconds=5))
    assert [p.seq for p in got] == [2, 3, 4]  # since inclusive, until exclusive

    first = await history.positions(org, vehicle, *WIDE, limit=4)
    assert [p.seq for p in first] == [0, 1, 2, 3]  # the limit keeps the earliest


async def test_positions_are_scoped_to_org_and_vehicle(history: HistoryStore) -> None:
    org, vehicle = ids()
    other_org, other_vehicle = ids()
    await history.append_positions([pos(org, vehicle, 0, 0)])
    await history.append_positions([pos(other_org, other_vehicle, 0, 0), pos(org, other_vehicle, 1, 0)])

    assert await history.positions(other_org, vehicle, *WIDE) == []  # another org cannot read it
    assert [p.vehicle_id for p in await history.positions(org, vehicle, *WIDE)] == [vehicle]
    theirs = await history.positions(other_org, other_vehicle, *WIDE)
    assert [p.organization_id for p in theirs] == [other_org]


async def test_other_timezones_are_normalized_to_utc(history: HistoryStore) -> None:
    org, vehicle = ids()
    plus_two = timezone(timedelta(hours=2))
    local = T0.astimezone(plus_two)
    point = Position(org, vehicle, None, 1, local, 1.0, 2.0)
    assert point.recorded_at == T0
    assert point.recorded_at.utcoffset() == timedelta(0)
    await history.append_positions([point])
    # The same instant in another zone is the same key.
    assert await history.append_positions([Position(org, vehicle, None, 1, T0, 1.0, 2.0)]) == 0

    got = await history.positions(org, vehicle, local - timedelta(seconds=1), local + timedelta(seconds=1))
    assert [p.recorded_at for p in got] == [T0]
    assert got[0].recorded_at.utcoffset() == timedelta(0)


async def test_naive_and_invalid_inputs_are_rejected(history: HistoryStore) -> None:
    org, vehicle = ids()
    with pytest.raises(ValueError, match="timezone-aware"):
        Position(org, vehicle, None, 0, datetime(2030, 1, 1), 1.0, 2.0)
    with pytest.raises(ValueError, match="latitude"):
        Position(org, vehicle, None, 0, T0, 91.0, 2.0)
    with pytest.raises(ValueError, match="seq"):
        Position(org, vehicle, None, -1, T0, 1.0, 2.0)
    with pytest.raises(ValueError, match="timezone-aware"):
        await history.positions(org, vehicle, datetime(2030, 1, 1), T0)
    with pytest.raises(ValueError, match="until"):
        await history.positions(org, vehicle, T0, T0 - timedelta(seconds=1))
    with pytest.raises(ValueError, match="limit"):
        await history.positions(org, vehicle, *WIDE, limit=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        event(org, uuid.uuid4(), 1, occurred_at=datetime(2030, 1, 1))
    with pytest.raises(TypeError):
        event(org, uuid.uuid4(), 1, data={"when": T0})  # not JSON


# Delivery events -----------------------------------------------------------------------------


async def test_append_event_is_idempotent_on_workflow_and_sequence(history: HistoryStore) -> None:
    org, delivery = ids()
    first = event(org, delivery, 1)

    assert await history.append_event(first) is True
    # A retried activity re-sends the same key, possibly with different content: the first wins.
    assert await history.append_event(event(org, delivery, 1, type="other", data={"x": 1})) is False
    assert await history.append_event(event(org, delivery, 2)) is True

    assert await history.events(org, delivery) == [first, event(org, delivery, 2)]


async def test_concurrent_duplicate_events_store_one(history: HistoryStore) -> None:
    org, delivery = ids()
    results = await asyncio.gather(*(history.append_event(event(org, delivery, 5)) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    assert len(await history.events(org, delivery)) == 1


async def test_events_come_back_ordered_by_sequence(history: HistoryStore) -> None:
    org, delivery = ids()
    for sequence in (3, 1, 4, 2, 0):
        assert await history.append_event(event(org, delivery, sequence, actor=None, data={}))

    got = await history.events(org, delivery)
    assert [e.sequence for e in got] == [0, 1, 2, 3, 4]
    assert got[2] == event(org, delivery, 2, actor=None, data={})
    assert got[2].occurred_at == T0 + timedelta(minutes=2)


async def test_events_are_scoped_to_org_and_delivery(history: HistoryStore) -> None:
    org, delivery = ids()
    other_org, other_delivery = ids()
    await history.append_event(event(org, delivery, 1))
    await history.append_event(event(org, other_delivery, 1))

    assert await history.events(other_org, delivery) == []  # another org cannot read it
    assert [e.delivery_id for e in await history.events(org, delivery)] == [delivery]
    assert await history.events(org, uuid.uuid4()) == []


async def test_ping(history: HistoryStore) -> None:
    await history.ping()
