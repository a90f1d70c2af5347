"""One simulated vehicle: from the depot along its route, stop after stop, over REST and the socket."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from domain.geo import LatLon
from domain.paths import Leg
from tools.simulate.driver_api import DriverApi
from tools.simulate.link import DriverLink
from tools.simulate.options import (
    FINAL,
    POLL_S,
    ApiError,
    Emit,
    SimulateOptions,
    SimulationError,
    VehicleReport,
)


class VehicleSim:
    def __init__(
        self,
        opts: SimulateOptions,
        api: DriverApi,
        route: dict[str, Any],
        emit: Emit,
        stopping: asyncio.Event,
    ) -> None:
        self.opts, self.api, self.route, self.stopping = opts, api, route, stopping
        self.report = VehicleReport(driver=api.email, vehicle_id=route["vehicle_id"], route_id=route["id"])
        self._emit = emit
        self.speed_mps = opts.speed_kmh / 3.6
        self.interval_s = 1.0 / opts.rate_hz
        self.here: LatLon | None = None
        self.heading: float | None = None
        self._arrivals: dict[str, asyncio.Event] = {}
        self.link = DriverLink(
            _ws_url(opts.sockets_url, "/ws/driver"),
            api,
            self.report,
            self.say,
            self._on_event,
            opts.keep_positions,
        )

    def say(self, text: str) -> None:
        self._emit(f"{datetime.now(UTC):%H:%M:%S} {self.report.vehicle or self.report.driver:<10} {text}")

    def _on_event(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "delivery.changed" and msg.get("status") in ("arrived", *FINAL):
            self._arrival_event(str(msg.get("delivery_id"))).set()

    def _arrival_event(self, delivery_id: str) -> asyncio.Event:
        return self._arrivals.setdefault(delivery_id, asyncio.Event())

    async def run(self) -> VehicleReport:
        try:
            await self._run()
        except ApiError as exc:
            self.report.error = f"API: {exc}"
        except httpx.TransportError as exc:
            self.report.error = f"API unreachable: {exc or type(exc).__name__}"
        except SimulationError as exc:
            self.report.error = str(exc)
        if self.report.error:
            self.say(f"stopped: {self.report.error}")
        await self.link.close()
        return self.report

    async def _run(self) -> None:
        r = self.report
        vehicle = await self.api.call("GET", f"/api/v1/vehicles/{self.route['vehicle_id']}")
        r.vehicle = vehicle.get("name") or self.route["vehicle_id"][:8]
        stops = self.route["stops"]
        r.stops = sum(1 for s in stops if s["status"] in ("planned", "arrived"))
        self.here = await self._start_position()
        self.say(f"{self.api.email}: route {self.route['id']}, {r.stops} open stops of {len(stops)}")
        self.link.start()
        try:
            await asyncio.wait_for(self.link.ready.wait(), 30)
        except TimeoutError:
            raise SimulationError("the driver socket did not become ready within 30 s") from None
        if self.link.fatal:
            r.error = self.link.fatal
            return
        self.link.send(self.here, 0.0, None, self.opts.accuracy_m)
        await self._load_at_start(stops)
        done: set[str] = set()
        while not self.stopping.is_set() and self.link.fatal is None:
            self.route = await self.api.call("GET", f"/api/v1/routes/{self.route['id']}")
            stop = next(
                (
                    s
                    for s in self.route["stops"]
                    if s["status"] in ("planned", "arrived") and s["key"] not in done
                ),
                None,
            )
            if stop is None:
                r.completed = True
                self.say(f"route complete: {r.delivered} delivered, {r.distance_m / 1000:.1f} km driven")
                return
            done.add(stop["key"])
            await self._serve(stop)
        if self.link.fatal:
            r.error = self.link.fatal

    async def _start_position(self) -> LatLon:
        depot_id = self.route.get("depot_id")
        if depot_id:
            depot = await self.api.call("GET", f"/api/v1/depots/{depot_id}")
            return LatLon(depot["location"]["lat"], depot["location"]["lon"])
        first = self.route["stops"][0]["location"] if self.route["stops"] else None
        if first is None:
            raise SimulationError("the route has no depot and no stops: nowhere to start")
        return LatLon(first["lat"], first["lon"])

    async def _load_at_start(self, stops: list[dict[str, Any]]) -> None:
        """Drop-offs without a pickup stop on the route are loaded at the start (the depot)."""
        pickups = {s["delivery_id"] for s in stops if s["kind"] == "pickup"}
        loaded = 0
        for s in stops:
            if s["kind"] != "delivery" or s["delivery_id"] in pickups or s["status"] != "planned":
                continue
            d = await self.api.call("GET", f"/api/v1/deliveries/{s['delivery_id']}")
            if d["status"] == "assigned" and await self._act(d, "pick-up"):
                loaded += 1
        if loaded:
            self.say(f"loaded {loaded} deliveries at the start")

    async def _act(self, delivery: dict[str, Any], name: str) -> bool:
        assert self.here is not None
        try:
            await self.api.action(delivery["id"], name, self.here)
        except ApiError as exc:
            self.report.action_errors += 1
            self.say(f"{name} of {_label(delivery)} refused: {exc}")
            return False
        if name == "pick-up":
            self.report.picked_up += 1
        return True

    async def _serve(self, stop: dict[str, Any]) -> None:
        assert self.here is not None
        d = await self.api.call("GET", f"/api/v1/deliveries/{stop['delivery_id']}")
        label = _label(d)
        if d["status"] in FINAL:
            return
        target = LatLon(stop["location"]["lat"], stop["location"]["lon"])
        if stop["kind"] == "pickup":
            await self._drive(target, f"pickup {label}")
            if not self.stopping.is_set() and await self._act(d, "pick-up"):
                self.say(f"picked up {label}")
            return
        if d["status"] == "assigned":  # not loaded at the start (e.g. assigned while on the road)
            await self._act(d, "pick-up")
            d = await self.api.call("GET", f"/api/v1/deliveries/{d['id']}")
        if d["status"] == "picked_up":
            await self._act(d, "depart")
        await self._drive(target, f"drop-off {label}")
        if self.stopping.is_set():
            return
        if d["status"] == "arrived":
            pass  # recorded before this run (e.g. a restarted simulator)
        elif (arrived := await self._await_arrival(d)) is None:
            return
        elif arrived:
            self.report.arrived += 1
        else:
            self.report.missed_arrivals += 1
            self.say(
                f"arrival at {label} not detected within {self.opts.arrival_timeout_s:g} s "
                "(is WAYBILL_TRACKING_ARRIVAL_DWELL_SECONDS longer?); delivering anyway"
            )
        try:
            out = await self.api.deliver(d, self.here)
        except ApiError as exc:
            self.report.action_errors += 1
            self.say(f"deliver {label} refused: {exc}")
            return
        self.report.delivered += 1
        dist = (out.get("proof") or {}).get("distance_m")
        self.say(f"delivered {label} (proof {dist if dist is not None else '?'} m from the drop-off)")

    async def _drive(self, target: LatLon, what: str) -> None:
        assert self.here is not None
        leg = Leg(self.here, target)
        self.say(
            f"driving to {what}: {leg.length_m / 1000:.2f} km, about {leg.duration_s(self.speed_mps):.0f} s"
        )
        self.heading = leg.heading_deg if leg.length_m > 0 else self.heading
        started = time.monotonic()
        tick = started
        driven = 0.0
        while driven < leg.length_m and not self.stopping.is_set():
            tick += self.interval_s
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            driven = min(leg.length_m, (time.monotonic() - started) * self.speed_mps)
            self.here = leg.at(driven)
            moving = driven < leg.length_m
            self.link.send(self.here, self.speed_mps if moving else 0.0, self.heading, self.opts.accuracy_m)
        self.report.distance_m += driven

    async def _await_arrival(self, d: dict[str, Any]) -> bool | None:
        """Park at the stop, reporting the position, until the server has recorded the arrival.

        False: not detected within the timeout; None: the simulation is stopping."""
        assert self.here is not None
        self.say(f"at drop-off {_label(d)}, waiting for geofencing to detect the arrival")
        event = self._arrival_event(d["id"])
        started = time.monotonic()
        next_poll = started + POLL_S
        while not self.stopping.is_set():
            now = time.monotonic()
            if event.is_set():
                break
            if now >= next_poll:
                next_poll = now + POLL_S
                status = (await self.api.call("GET", f"/api/v1/deliveries/{d['id']}"))["status"]
                if status == "arrived" or status in FINAL:
                    break
            if now - started > self.opts.arrival_timeout_s:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), self.interval_s)
            if not event.is_set():
                self.link.send(self.here, 0.0, self.heading, self.opts.accuracy_m)
        else:
            return None
        self.say(f"arrived at {_label(d)} (detected after {time.monotonic() - started:.1f} s parked)")
        return True


def _label(delivery: dict[str, Any]) -> str:
    ref = delivery.get("external_ref") or str(delivery["id"])[:8]
    address = (delivery.get("dropoff") or {}).get("address")
    return f"{ref} ({address})" if address else str(ref)


def _ws_url(base: str, path: str) -> str:
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def http_url(base: str, path: str) -> str:
    parts = urlsplit(base)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, path, "", ""))
