"""The position pipeline: filter, buffer, store history in batches, cache the latest, publish.

Hot path (`submit`) is synchronous apart from the first fix of a vehicle (its cached latest seeds the
filter) and back-pressure: nothing waits on Redis or the database per position.

- History: accepted positions join the current *generation* of the buffer. A generation is written
  in one `append_positions` call when it reaches `batch` positions or `flush_s` passed; a few may be
  in flight at once (MAX_IN_FLIGHT), the others wait their turn. Acks go out per frame once its
  generation *and every earlier one* are stored, so an acknowledged position is always stored (a crash
  loses only unacknowledged ones, which the phone re-sends; the store ignores repeats).
- Latest and live stream: every `publish_s` the newest accepted fix per vehicle goes to the cache in
  one round trip per organization, and the accepted positions to the organization's bus channel in
  one message, so Redis sees tens of operations per second, not one per position.
- Each accepted position is encoded to JSON once (`fix_json`, api/sockets/position_json.py), when it is
  accepted: the bus message, the cached latest position and the dispatchers' `positions` frames are
  made of those same bytes.
- A vehicle's first fix waits for its cached latest position (it seeds the filter); the vehicles that
  connect together are looked up in one round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from api.sockets.counts import IngestStats
from api.sockets.position_json import VehicleRef, fix_from_message, fix_json, positions_payload
from db.bus.base import CacheBus, LatestItem
from db.history.base import HistoryStore, Position
from domain import channels
from domain.positions import FilterConfig, Fix, VehicleTrack

if TYPE_CHECKING:
    from api.sockets.metrics import SocketMetrics

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 3  # concurrent history writes
RETRY_S = 0.5
Ack = Callable[[list[int], list[tuple[int, str]]], None]


@dataclass
class _Generation:
    positions: list[Position] = field(default_factory=list)
    acks: list[tuple[Ack, list[int], list[tuple[int, str]]]] = field(default_factory=list)
    stored: bool = False
    opened: float = 0.0  # monotonic time of its first frame (waybill_position_ingest_seconds)


class Ingest:
    def __init__(
        self,
        cache_bus: CacheBus,
        history: HistoryStore,
        cfg: FilterConfig,
        *,
        batch: int,
        flush_s: float,
        publish_s: float,
        on_latest: Callable[[VehicleRef, Fix], None] | None = None,
        max_buffered: int | None = None,
        metrics: SocketMetrics | None = None,
    ) -> None:
        self.bus, self.history, self.cfg = cache_bus, history, cfg
        self.metrics = metrics
        self.batch, self.flush_s, self.publish_s = batch, flush_s, publish_s
        self.on_latest = on_latest
        self.max_buffered = max_buffered or batch * 20
        self.stats = IngestStats()
        self.tracks: dict[UUID, VehicleTrack] = {}
        self._seeding: dict[UUID, asyncio.Future[None]] = {}
        self._current = _Generation()
        self._queue: deque[_Generation] = deque()  # generations not yet acknowledged, oldest first
        self._buffered = 0
        self._outbox: dict[UUID, list[str]] = {}  # organization -> accepted positions (`fix_json`)
        self._latest: dict[UUID, dict[UUID, tuple[VehicleRef, Fix, str]]] = {}
        self._to_seed: dict[UUID, list[tuple[VehicleRef, asyncio.Future[None]]]] = {}  # per organization
        self._seeder: asyncio.Task[None] | None = None
        self._flush_now = asyncio.Event()
        self._stopping = asyncio.Event()
        # Submitters waiting for room in the buffer, first come first served. The one woken passes the
        # turn on when it is done, so a write that frees room wakes one task, not every blocked phone.
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._writes: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # Lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="ingest-flush"),
            asyncio.create_task(self._publish_loop(), name="ingest-publish"),
        ]

    async def stop(self) -> None:
        """Store and acknowledge everything submitted so far; later submits are refused."""
        # The loops are told to end, never cancelled: a cancel landing in `wait_for` as its timeout fires
        # can be lost on Python 3.11 (the task then waits forever), and one landing mid-publish would
        # drop that tick's positions.
        self._closing = True
        self._flush_now.set()
        self._stopping.set()
        await asyncio.gather(*self._tasks)
        await self._publish_once()
        self._seal()
        while self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        for gen in list(self._queue):
            if not gen.stored:  # a write that failed: keep trying, a clean stop must lose nothing
                await self._write(gen, forever=True)

    # Hot path ---------------------------------------------------------------------------------

    async def submit(
        self, ref: VehicleRef, fixes: list[Fix], invalid: list[tuple[int, str]], ack: Ack
    ) -> None:
        """Judge the fixes; `ack(seqs, filtered)` is called once every stored one is durable."""
        if self._closing:
            raise RuntimeError("ingest is stopping")
        if self._buffered >= self.max_buffered or self._waiting:  # the store is behind: stop reading
            await self._wait_for_room()
        track = self.tracks.get(ref.vehicle_id)
        if track is None:
            track = await self._seed(ref)
        now = datetime.now(UTC)
        seqs, filtered = [seq for seq, _ in invalid], list(invalid)
        gen = self._current
        if not gen.acks:
            gen.opened = time.monotonic()
        positions = gen.positions
        before = len(positions)
        newest: tuple[Fix, str] | None = None
        stats = self.stats
        stats.received += len(fixes) + len(invalid)
        org, vehicle, driver = ref.organization_id, ref.vehicle_id, ref.driver_id
        outbox = self._outbox.get(org)
        if outbox is None:
            outbox = self._outbox[org] = []
        for fix in fixes:
            seqs.append(fix.seq)
            reason = track.judge(fix, now)
            if reason is not None:
                filtered.append((fix.seq, reason.value))
                stats.filtered[reason.value] = stats.filtered.get(reason.value, 0) + 1
                continue
            positions.append(
                Position(
                    org,
                    vehicle,
                    driver,
                    fix.seq,
                    fix.recorded_at,
                    fix.lat,
                    fix.lon,
                    fix.accuracy_m,
                    fix.speed_mps,
                    fix.heading_deg,
                )
            )
            text = fix_json(ref, fix)
            outbox.append(text)
            if track.latest is fix:
                newest = (fix, text)
        accepted = len(positions) - before
        stats.accepted += accepted
        if newest is not None:
            self._latest.setdefault(org, {})[vehicle] = (ref, *newest)
        gen.acks.append((ack, seqs, filtered))
        self._buffered += accepted
        if len(positions) >= self.batch:  # full: sealed now, not by the flush loop (see `_seal`)
            self._seal()
        if self._waiting and self._buffered < self.max_buffered:
            self._next_turn()

    async def _wait_for_room(self) -> None:
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._next_turn()  # woken, then cancelled (the socket closed): pass the turn on
            raise
        if self._buffered < self.max_buffered:
            self._next_turn()  # the next one runs after this one has added its positions

    def _next_turn(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return

    async def _seed(self, ref: VehicleRef) -> VehicleTrack:
        pending = self._seeding.get(ref.vehicle_id)
        if pending is None:
            # Queued for the seeder task, which looks up every vehicle queued meanwhile in one round trip
            # per organization: 2,000 phones connecting at once cost a few HMGETs, not 2,000 GETs (and as
            # many Redis connections opened at once).
            pending = self._seeding[ref.vehicle_id] = asyncio.get_running_loop().create_future()
            self._to_seed.setdefault(ref.organization_id, []).append((ref, pending))
            if self._seeder is None or self._seeder.done():
                self._seeder = asyncio.create_task(self._seed_queued(), name="ingest-seed")
        await asyncio.shield(pending)
        return self.tracks[ref.vehicle_id]

    async def _seed_queued(self) -> None:
        while self._to_seed:
            await asyncio.sleep(0)  # let the other connections of this moment queue up too
            queued, self._to_seed = self._to_seed, {}
            for org, waiting in queued.items():
                cached: list[dict[str, Any] | None] = [None] * len(waiting)
                try:
                    cached = await self.bus.get_latest_many(org, [ref.vehicle_id for ref, _ in waiting])
                except Exception as exc:  # the cache being down must not stop ingest
                    log.warning("could not read the latest positions of %d vehicles: %s", len(waiting), exc)
                for (ref, done), latest in zip(waiting, cached, strict=True):
                    track = VehicleTrack(self.cfg)
                    if latest is not None:
                        try:
                            track.seed(fix_from_message(latest))
                        except Exception as exc:  # a cached entry we cannot read: start afresh
                            log.warning("unreadable latest position of %s: %s", ref.vehicle_id, exc)
                    self.tracks.setdefault(ref.vehicle_id, track)
                    del self._seeding[ref.vehicle_id]
                    done.set_result(None)

    # History ----------------------------------------------------------------------------------

    def _seal(self) -> None:
        """Close the current generation; it is written as soon as a write slot is free.

        `submit` seals a generation once it holds `batch` positions, so that writes of `batch` positions
        follow each other while the next one fills up. (Left to the flush loop, a burst of frames read in
        one go grew one generation to `max_buffered`, and reading, writing and acknowledging took turns
        instead of overlapping.)"""
        gen = self._current
        if gen.positions or gen.acks:
            self._current = _Generation()
            self._queue.append(gen)
            task = asyncio.create_task(self._write(gen))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _flush_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), self.flush_s)
            if self._closing:
                return  # stop() seals the last generation
            self._flush_now.clear()
            await self._slots.acquire()
            self._slots.release()
            self._seal()

    async def _write(self, gen: _Generation, *, forever: bool = False) -> None:
        async with self._slots:
            while True:
                try:
                    if gen.positions:
                        started = time.perf_counter()
                        self.stats.stored += await self.history.append_positions(gen.positions)
                        if self.metrics is not None:
                            self.metrics.history_flush_seconds.observe(time.perf_counter() - started)
                            self.metrics.history_batch_size.observe(len(gen.positions))
                    break
                except Exception as exc:
                    if self.metrics is not None:
                        self.metrics.history_failures.inc()
                    if self._closing and not forever:
                        return  # stop() retries it
                    log.error("history write of %d positions failed, retrying: %s", len(gen.positions), exc)
                    await asyncio.sleep(RETRY_S)
        gen.stored = True
        self._release()

    def _release(self) -> None:
        # One ack per socket for everything released together (a phone's frames stored in the same
        # write): an ack frame costs the server about as much as the position it acknowledges.
        acks: dict[Ack, tuple[list[int], list[tuple[int, str]]]] = {}
        while self._queue and self._queue[0].stored:
            gen = self._queue.popleft()
            self._buffered -= len(gen.positions)
            if self.metrics is not None and gen.acks:
                self.metrics.ingest_seconds.observe(time.monotonic() - gen.opened)
            for ack, seqs, filtered in gen.acks:
                merged = acks.get(ack)
                if merged is None:
                    acks[ack] = (seqs, filtered)
                else:
                    merged[0].extend(seqs)
                    merged[1].extend(filtered)
        for ack, (seqs, filtered) in acks.items():
            try:
                ack(seqs, filtered)
            except Exception:
                log.exception("ack failed")
        if self._buffered < self.max_buffered:
            self._next_turn()

    # Latest and live stream -------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.publish_s)
            if self._closing:
                return  # stop() publishes the last tick
            try:
                await self._publish_once()
            except Exception:
                log.exception("publishing positions failed")

    async def _publish_once(self) -> None:
        outbox, self._outbox = self._outbox, {}
        latest, self._latest = self._latest, {}
        jobs: list[Awaitable[None]] = []
        for org, vehicles in latest.items():
            items = [
                LatestItem(ref.vehicle_id, f.lat, f.lon, text.encode()) for ref, f, text in vehicles.values()
            ]
            jobs.append(self.bus.set_latest_many(org, items))
        for org, texts in outbox.items():
            if texts:
                jobs.append(self.bus.publish_raw(channels.org_positions(str(org)), positions_payload(texts)))
        for result in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(result, BaseException):
                log.warning("publishing positions failed: %s", result)
        if self.on_latest is not None:
            for vehicles in latest.values():
                for ref, fix, _ in vehicles.values():
                    self.on_latest(ref, fix)


__all__ = ["Ack", "Ingest"]
