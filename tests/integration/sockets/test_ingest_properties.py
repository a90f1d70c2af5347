"""The whole pipeline (filters, batched SQL history, cached latest) under generated streams: shuffled,
repeated and corrupted positions arriving in frames of random sizes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.sockets.ingest import Ingest
from api.sockets.position_json import VehicleRef
from db.bus.memory import MemoryCacheBus
from db.history.sql import SqlHistoryStore
from db.session import create_engine, create_sessionmaker
from domain.positions import FilterConfig, Fix, distance_m, static_check
from plumbing.settings import to_async_url
from tests.unit.test_positions import CFG, NOW, streams

ORG = uuid.uuid4()


async def pipeline(url: str, arriving: list[Fix], cuts: list[int]) -> None:
    engine = create_engine(to_async_url(url))
    bus, history = MemoryCacheBus(), SqlHistoryStore(create_sessionmaker(engine))
    cfg = FilterConfig(max_speed_mps=CFG.max_speed_mps, max_future_s=1e9, max_age_s=1e9, window=CFG.window)
    ingest = Ingest(bus, history, cfg, batch=7, flush_s=0.005, publish_s=0.002)
    ref = VehicleRef(ORG, uuid.uuid4(), None)
    acked: list[int] = []
    ingest.start()
    try:
        bounds = sorted({0, len(arriving), *(c % (len(arriving) + 1) for c in cuts)})
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            await ingest.submit(ref, arriving[lo:hi], [], lambda seqs, _: acked.extend(seqs))
            await asyncio.sleep(0)
    finally:
        await ingest.stop()
    stored = await history.positions(ORG, ref.vehicle_id, NOW - timedelta(days=1), NOW + timedelta(days=1))
    latest = await bus.get_latest(ORG, ref.vehicle_id)
    await engine.dispose()

    assert sorted(acked) == sorted(f.seq for f in arriving)  # every position acknowledged
    now = datetime.now(UTC)
    for p in stored:  # nothing that breaks a rule
        assert static_check(Fix(p.seq, p.recorded_at, p.lat, p.lon, p.accuracy_m), now, cfg) is None
    for a, b in zip(stored, stored[1:], strict=False):
        dt = (b.recorded_at - a.recorded_at).total_seconds()
        slack = (a.accuracy_m or 0) + (b.accuracy_m or 0)
        assert distance_m(a.lat, a.lon, b.lat, b.lon) - slack <= cfg.max_speed_mps * dt + 1e-6
    assert len({p.recorded_at for p in stored}) == len(stored)  # a repeat is stored once
    assert latest is not None
    assert latest["seq"] == stored[-1].seq


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(streams(), st.lists(st.integers(0, 100), max_size=6))
def test_pipeline_stores_only_valid_positions_once_and_caches_the_newest(
    sqlite_url: str, s: tuple[list[Fix], list[Fix], list[Fix]], cuts: list[int]
) -> None:
    asyncio.run(pipeline(sqlite_url, s[0], cuts))
