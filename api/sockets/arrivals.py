"""Arrivals, depot geofences and live ETAs from each vehicle's latest accepted fix.

Runs beside ingestion, never in its way: the pipeline hands over the newest fix per vehicle each
publish tick (`offer`), and one worker task evaluates them, loading the vehicle's open route (the
`routes` projection, refreshed on `route.changed` and every ROUTE_TTL_S) and its organization's
depots. Events go to the organization's positions channel; arrivals to the delivery workflow
(`DeliveryWorkflow.arrived`, once per stop) and ETAs to the route workflow (`RouteWorkflow.report_eta`)
when they moved by at least the threshold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from api.resources import Resources
from api.sockets.counts import TrackingStats
from api.sockets.position_json import VehicleRef
from api.sockets.workflow_signals import report_eta, signal_arrived
from db.repositories.sockets_tracking import depot_points, open_routes
from domain import channels
from domain.delivery import ArrivalSignal
from domain.delivery import Position as DeliveryPosition
from domain.positions import DwellDetector, Fence, Fix, eta_from, fence_events, fences_containing
from domain.routes import EtaReport, RouteState, StopStatus, estimate_etas

log = logging.getLogger(__name__)

ROUTE_TTL_S = 30.0
DEPOT_TTL_S = 300.0
ROUTE_QUERY_CHUNK = 500  # vehicles per route query (bound parameters stay far below SQLite's limit)
ETA_EVERY_S = 5.0  # of fix time: ETAs are recomputed at most this often per vehicle


@dataclass
class _Vehicle:
    dwell: DwellDetector
    route: RouteState | None = None
    route_loaded: float = -1e9
    depots_inside: set[str] | None = None
    eta_at: datetime | None = None
    eta_told: tuple[str, datetime] | None = None


class Tracker:
    def __init__(self, resources: Resources) -> None:
        s = resources.settings
        self.r = resources
        self.radius_m, self.dwell_s = s.tracking_arrival_radius_m, s.tracking_arrival_dwell_seconds
        self.depot_radius_m, self.eta_threshold_s = (
            s.tracking_depot_radius_m,
            s.tracking_eta_threshold_seconds,
        )
        self.stats = TrackingStats()
        self._vehicles: dict[UUID, _Vehicle] = {}
        self._depots: dict[UUID, tuple[float, list[Fence]]] = {}
        self._pending: dict[UUID, tuple[VehicleRef, Fix]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._signals: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tracking")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._signals:
            await asyncio.gather(*self._signals, return_exceptions=True)

    def offer(self, ref: VehicleRef, fix: Fix) -> None:
        self._pending[ref.vehicle_id] = (ref, fix)
        self._wake.set()

    def route_changed(self, organization_id: UUID, vehicle_id: str) -> None:  # noqa: ARG002
        with contextlib.suppress(ValueError):
            v = self._vehicles.get(UUID(vehicle_id))
            if v is not None:
                v.route_loaded = -1e9  # reload before the next fix is judged

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, {}
            try:
                await self._refresh_routes([ref.vehicle_id for ref, _ in pending.values()])
            except Exception:
                self.stats.errors += 1
                log.exception("loading the routes of %d vehicles failed", len(pending))
            for ref, fix in pending.values():
                try:
                    await self.evaluate(ref, fix)
                except Exception:
                    self.stats.errors += 1
                    log.exception("tracking of vehicle %s failed", ref.vehicle_id)

    def _vehicle(self, vehicle_id: UUID) -> _Vehicle:
        v = self._vehicles.get(vehicle_id)
        if v is None:
            v = self._vehicles[vehicle_id] = _Vehicle(DwellDetector(self.radius_m, self.dwell_s))
        return v

    async def _refresh_routes(self, vehicle_ids: list[UUID]) -> None:
        """Load the routes due for a reload of all these vehicles in one query (thousands of vehicles
        each send a fix per second or so: one query per vehicle was most of the tracker's cost)."""
        now = time.monotonic()
        due = [vid for vid in vehicle_ids if now - self._vehicle(vid).route_loaded > ROUTE_TTL_S]
        for start in range(0, len(due), ROUTE_QUERY_CHUNK):
            chunk = due[start : start + ROUTE_QUERY_CHUNK]
            routes = await self._load_routes(chunk)
            loaded = time.monotonic()
            for vid in chunk:
                self._set_route(self._vehicles[vid], routes.get(vid), loaded)

    @staticmethod
    def _set_route(v: _Vehicle, route: RouteState | None, loaded: float) -> None:
        v.route, v.route_loaded = route, loaded
        # Arrivals are remembered per route (stop keys are per delivery): a delivery re-attempted on a
        # later route is detected again, and earlier routes' arrivals are forgotten, not kept forever.
        here = f"{route.route_id}/" if route is not None else None
        v.dwell.fired = {k for k in v.dwell.fired if here is not None and k.startswith(here)}

    async def evaluate(self, ref: VehicleRef, fix: Fix) -> None:
        v = self._vehicle(ref.vehicle_id)
        await self._geofences(ref, fix, v)
        if time.monotonic() - v.route_loaded > ROUTE_TTL_S:
            self._set_route(v, await self._load_route(ref.vehicle_id), time.monotonic())
        if v.route is None:
            return
        nxt = v.route.next_stop
        if nxt is None:
            return
        planned = nxt.kind == "delivery" and nxt.status is StopStatus.PLANNED
        target = f"{v.route.route_id}/{nxt.key}" if planned else None
        if v.dwell.update(target, fix.lat, fix.lon, nxt.lat, nxt.lon, fix.recorded_at):
            await self._arrived(ref, fix, nxt.delivery_id, nxt.key)
        if nxt.status is StopStatus.PLANNED and (
            v.eta_at is None or (fix.recorded_at - v.eta_at).total_seconds() >= ETA_EVERY_S
        ):
            v.eta_at = fix.recorded_at
            await self._eta(ref, fix, v, v.route)

    async def _geofences(self, ref: VehicleRef, fix: Fix, v: _Vehicle) -> None:
        fences = await self._fences(ref.organization_id)
        inside = fences_containing(fences, fix.lat, fix.lon)
        for event, depot in fence_events(v.depots_inside, inside):
            self.stats.geofence += 1
            await self._publish(
                ref,
                {"type": "geofence", "event": event, "depot_id": depot, "at": fix.recorded_at.isoformat()},
            )
        v.depots_inside = inside

    async def _arrived(self, ref: VehicleRef, fix: Fix, delivery_id: str, key: str) -> None:
        self.stats.arrivals += 1
        at = fix.recorded_at.isoformat()
        await self._publish(ref, {"type": "arrival", "delivery_id": delivery_id, "stop_key": key, "at": at})
        sig = ArrivalSignal(str(ref.vehicle_id), fix.recorded_at, DeliveryPosition(fix.lat, fix.lon))

        async def send() -> None:
            await signal_arrived(await self.r.temporal.get(), delivery_id, sig)

        self._background(send(), f"arrived signal for {delivery_id}")

    async def _eta(self, ref: VehicleRef, fix: Fix, v: _Vehicle, route: RouteState) -> None:
        nxt = route.next_stop
        assert nxt is not None
        now = datetime.now(UTC)
        eta = eta_from(fix, nxt.lat, nxt.lon, now)
        told = v.eta_told
        if (
            told is not None
            and told[0] == nxt.key
            and abs((eta - told[1]).total_seconds()) < self.eta_threshold_s
        ):
            return
        v.eta_told = (nxt.key, eta)
        self.stats.etas += 1
        moved = estimate_etas(replace(route, tracked_stop=nxt.key, tracked_eta=eta), now)
        stops = [
            {
                "key": s.key,
                "delivery_id": s.delivery_id,
                "kind": s.kind,
                "eta": s.eta.isoformat() if s.eta else None,
            }
            for s in moved.stops
            if s.status is StopStatus.PLANNED
        ]
        await self._publish(ref, {"type": "eta", "route_id": route.route_id, "stops": stops})
        report = EtaReport(nxt.key, eta, fix.recorded_at)

        async def send() -> None:
            await report_eta(await self.r.temporal.get(), route.route_id, report)

        self._background(send(), f"ETA for route {route.route_id}")

    def _background(self, job: Any, what: str) -> None:
        async def run() -> None:
            try:
                await job
            except Exception as exc:
                self.stats.errors += 1
                log.warning("%s failed: %s", what, exc)

        task = asyncio.create_task(run())
        self._signals.add(task)
        task.add_done_callback(self._signals.discard)

    async def _publish(self, ref: VehicleRef, message: dict[str, Any]) -> None:
        message = {**message, "vehicle_id": str(ref.vehicle_id)}
        await self.r.cache_bus.publish(channels.org_positions(str(ref.organization_id)), message)

    async def _load_route(self, vehicle_id: UUID) -> RouteState | None:
        return (await self._load_routes([vehicle_id])).get(vehicle_id)

    async def _load_routes(self, vehicle_ids: list[UUID]) -> dict[UUID, RouteState]:
        """Each vehicle's open route (the latest shift, then the latest updated), if it has one."""
        if not vehicle_ids:
            return {}
        async with self.r.sessionmaker() as session:
            return await open_routes(session, vehicle_ids)

    async def _fences(self, org: UUID) -> list[Fence]:
        cached = self._depots.get(org)
        if cached is not None and time.monotonic() - cached[0] < DEPOT_TTL_S:
            return cached[1]
        async with self.r.sessionmaker() as session:
            depots = await depot_points(session, org)
        fences = [Fence(str(ident), lat, lon, self.depot_radius_m) for ident, lat, lon in depots]
        self._depots[org] = (time.monotonic(), fences)
        return fences
