"""`waybill simulate`: drive seeded drivers along their routes through the real API and driver socket.

Each simulated vehicle logs in as a driver over REST, reads its current route, loads its drop-offs at
the depot, then drives from stop to stop on straight great-circle legs at a constant speed, reporting
positions over /ws/driver like the driver app does (auth frame, `position` frames with a `seq`, resend
of everything not yet acknowledged after a reconnect). At a drop-off it parks and keeps reporting until
the server's geofencing reports the arrival (the delivery's `delivery.changed` frame on the driver
socket, or its status over REST): the simulator never calls the arrive action itself. Then it acts
through the REST driver actions: pick-up, depart, proof upload and deliver at the stop's position.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import struct
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from domain.geo import LatLon
from domain.paths import Leg
from tools.seed import DEMO_DOMAIN, DEV_PASSWORD

log = logging.getLogger(__name__)

CHUNK = 200  # positions per frame when resending a backlog (~40 KiB, under the 64 KiB frame limit)
MAX_BACKLOG = 100_000  # unacknowledged positions kept per vehicle while the socket is down
POLL_S = 2.0  # how often a parked vehicle asks the API whether its arrival was recorded
DRAIN_S = 5.0  # at the end: how long to wait for the last acknowledgements
BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
RETRIES = 5  # REST calls that failed on the way (transport errors, 502-504)
TRANSIENT = frozenset({502, 503, 504})
FINAL = frozenset({"delivered", "returned", "cancelled"})
Emit = Callable[[str], None]

# Close codes after which reconnecting cannot help (api/sockets/frames.py).
FATAL_CLOSE = {4401: "not authenticated", 4403: "forbidden", 4404: "this driver has no vehicle"}


class SimulationError(Exception):
    """Setup that cannot work (unreachable services, no drivers, no routes); the message says what to do."""


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


@dataclass(frozen=True)
class SimulateOptions:
    vehicles: int = 1
    rate_hz: float = 1.0
    api_url: str = "http://localhost:8000"
    sockets_url: str = "ws://localhost:8001"
    speed_kmh: float = 40.0
    duration_s: float | None = None  # stop after this long even if routes remain; None: until done
    driver_email: str = "driver{n}@" + DEMO_DOMAIN
    password: str = DEV_PASSWORD
    accuracy_m: float = 5.0
    arrival_timeout_s: float = 120.0  # parked at a drop-off without the arrival being detected
    keep_positions: bool = False  # remember every position sent (tests compare them with the stream)


@dataclass
class VehicleReport:
    driver: str
    vehicle: str = ""
    vehicle_id: str | None = None
    route_id: str | None = None
    stops: int = 0
    picked_up: int = 0
    arrived: int = 0
    delivered: int = 0
    missed_arrivals: int = 0  # drop-offs where geofencing did not report the arrival in time
    action_errors: int = 0
    sent: int = 0
    acked: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    unacked: int = 0
    distance_m: float = 0.0
    completed: bool = False
    error: str | None = None
    positions: list[dict[str, Any]] = field(default_factory=list)  # only with keep_positions
    filtered_seqs: set[int] = field(default_factory=set)


@dataclass
class SimulationResult:
    vehicles: list[VehicleReport]
    interrupted: bool  # stopped by Ctrl-C / SIGTERM (or the caller's `stopping`) before the routes ended
    elapsed_s: float
    timed_out: bool = False  # --duration ran out first

    @property
    def ok(self) -> bool:
        return all(v.error is None and v.missed_arrivals == 0 and v.action_errors == 0 for v in self.vehicles)


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# REST --------------------------------------------------------------------------------------------


class DriverApi:
    """One driver's REST session: login, token refresh, and the calls the simulator needs."""

    def __init__(self, http: httpx.AsyncClient, email: str, password: str) -> None:
        self.http, self.email, self.password = http, email, password
        self._access = ""
        self._refresh = ""
        self._expires = 0.0  # monotonic

    async def login(self) -> None:
        r = await self.http.post("/api/v1/auth/login", json={"email": self.email, "password": self.password})
        self._store(r)

    def _store(self, r: httpx.Response) -> None:
        body = _body(r)
        self._access, self._refresh = body["access_token"], body["refresh_token"]
        self._expires = time.monotonic() + float(body.get("expires_in", 900))

    async def token(self) -> str:
        """A valid access token, refreshed a minute before it expires (sockets re-authenticate with it)."""
        if time.monotonic() > self._expires - 60:
            r = await self.http.post("/api/v1/auth/refresh", json={"refresh_token": self._refresh})
            if r.status_code == 401:
                await self.login()  # the refresh token went stale (e.g. a long pause): sign in again
            else:
                self._store(r)
        return self._access

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; an API restart or a Temporal hiccup (502-504, no connection) is retried a few
        times. Actions are retried only when nothing reached the server or it answered 5xx."""
        for attempt in range(RETRIES + 1):
            try:
                headers = {"Authorization": f"Bearer {await self.token()}"}
                r = await self.http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if attempt == RETRIES or (method != "GET" and not isinstance(exc, httpx.ConnectError)):
                    raise
            else:
                if r.status_code not in TRANSIENT or attempt == RETRIES:
                    return _body(r)
            await asyncio.sleep(min(4.0, 0.5 * 2**attempt))
        raise AssertionError("unreachable")

    async def current_route(self) -> dict[str, Any] | None:
        try:
            route: dict[str, Any] = await self.call("GET", "/api/v1/routes/current")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return route

    async def action(self, delivery_id: str, name: str, at: LatLon | None = None) -> dict[str, Any]:
        body = {"location": {"lat": at.lat, "lon": at.lon}} if at else None
        out: dict[str, Any] = await self.call("POST", f"/api/v1/deliveries/{delivery_id}/{name}", json=body)
        return out

    async def deliver(self, delivery: dict[str, Any], at: LatLon) -> dict[str, Any]:
        """Proof of delivery: a photo (unique per delivery: files belong to one delivery) and the position."""
        delivery_id = delivery["id"]
        photo = proof_png(f"waybill simulate {delivery_id} {datetime.now(UTC).isoformat()}")
        proof = await self.call(
            "POST",
            f"/api/v1/deliveries/{delivery_id}/proof",
            files={"file": ("proof.png", photo, "image/png")},
        )
        contact = (delivery.get("dropoff") or {}).get("contact") or {}
        body = {
            "recipient_name": contact.get("name") or "Simulated Recipient",
            "location": {"lat": at.lat, "lon": at.lon},
            "photo_sha256": proof["sha256"],
        }
        out: dict[str, Any] = await self.call("POST", f"/api/v1/deliveries/{delivery_id}/deliver", json=body)
        return out


def _body(r: httpx.Response) -> Any:
    if r.is_success:
        return r.json() if r.content else None
    try:
        problem = r.json()
        code, detail = str(problem.get("code", "error")), str(problem.get("detail", r.text))
    except ValueError:
        code, detail = "error", r.text[:200]
    raise ApiError(r.status_code, code, detail)


def proof_png(text: str) -> bytes:
    """A 1x1 PNG carrying `text`, so every proof photo has its own SHA-256."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"tEXt", b"Comment\x00" + text.encode())
        + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + chunk(b"IEND", b"")
    )


# Driver socket -----------------------------------------------------------------------------------


class DriverLink:
    """The driver socket with the app's delivery guarantee: every position is kept until the server
    acknowledges it, and everything unacknowledged is sent again, in order, after a reconnect."""

    def __init__(
        self,
        url: str,
        api: DriverApi,
        report: VehicleReport,
        emit: Emit,
        on_event: Callable[[dict[str, Any]], None],
        keep: bool,
    ) -> None:
        self.url, self.api, self.report, self.emit, self.on_event, self.keep = (
            url,
            api,
            report,
            emit,
            on_event,
            keep,
        )
        self.unacked: dict[int, dict[str, Any]] = {}  # seq -> position, in seq order
        self._seq = 0
        self._sent_upto = 0  # highest seq sent on the current connection
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()
        self.fatal: str | None = None
        self._closing = False
        self._connections = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"link:{self.report.driver}")

    def send(
        self, at: LatLon, speed_mps: float, heading_deg: float | None, accuracy_m: float
    ) -> dict[str, Any]:
        self._seq += 1
        p = {
            "seq": self._seq,
            "recorded_at": datetime.now(UTC).isoformat(),
            "lat": round(at.lat, 7),
            "lon": round(at.lon, 7),
            "accuracy_m": accuracy_m,
            "speed_mps": round(speed_mps, 2),
            "heading_deg": None if heading_deg is None else round(heading_deg, 1),
        }
        self.unacked[self._seq] = p
        if len(self.unacked) > MAX_BACKLOG:  # a very long outage: the oldest are not worth keeping
            del self.unacked[next(iter(self.unacked))]
        self.report.sent += 1
        if self.keep:
            self.report.positions.append(p)
        self._wake.set()
        return p

    async def close(self) -> None:
        """Wait (briefly) for the last acknowledgements, then close."""
        deadline = time.monotonic() + DRAIN_S
        while self.unacked and self.fatal is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._closing = True
        self.report.unacked = len(self.unacked)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            reason = ""
            sessions = self._connections
            try:
                async with connect(self.url, open_timeout=10, close_timeout=2, max_size=2**20) as ws:
                    await self._session(ws)
                    reason = "closed by the server"
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                if code in FATAL_CLOSE:
                    self.fatal = f"the socket server refused the driver: {FATAL_CLOSE[code]} ({code})"
                    self.ready.set()  # wake whoever waits for the link
                    return
                reason = f"connection lost ({code or 'no close frame'})"
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                reason = f"cannot connect: {exc or type(exc).__name__}"
            except ApiError as exc:  # the token refresh failed
                reason = f"cannot authenticate: {exc}"
            self.ready.clear()
            if self._closing:
                return
            if self._connections > sessions:  # it was up: start backing off from the shortest delay
                failures = 0
            delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
            failures += 1
            self.emit(
                f"socket {reason}; {len(self.unacked)} positions unacknowledged, retrying in {delay:g} s"
            )
            await asyncio.sleep(delay)

    async def _session(self, ws: ClientConnection) -> None:
        await ws.send(json.dumps({"type": "auth", "token": await self.api.token()}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if first.get("type") != "ready":
            await ws.wait_closed()  # the server closes after its error frame; the close code decides
            raise ConnectionClosed(ws.protocol.close_rcvd, ws.protocol.close_sent)
        self.report.vehicle_id = first.get("vehicle_id")
        if self._connections:
            self.report.reconnects += 1
            self.emit(f"socket reconnected; resending {len(self.unacked)} unacknowledged positions")
        self._connections += 1
        self._sent_upto = 0
        self.ready.set()
        self._wake.set()
        writer = asyncio.create_task(self._writer(ws))
        try:
            async for raw in ws:
                self._on_frame(raw)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer

    async def _writer(self, ws: ClientConnection) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending = [p for seq, p in list(self.unacked.items()) if seq > self._sent_upto]
            for i in range(0, len(pending), CHUNK):
                part = pending[i : i + CHUNK]
                msg = (
                    {"type": "position", **part[0]}
                    if len(part) == 1
                    else {"type": "positions", "positions": part}
                )
                await ws.send(json.dumps(msg))
                self._sent_upto = part[-1]["seq"]

    def _on_frame(self, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        kind = msg.get("type")
        if kind == "ack":
            for seq in msg.get("seqs", ()):
                if self.unacked.pop(seq, None) is not None:
                    self.report.acked += 1
            for item in msg.get("filtered", ()):
                reason = str(item.get("reason"))
                self.report.filtered[reason] = self.report.filtered.get(reason, 0) + 1
                self.report.filtered_seqs.add(int(item.get("seq", -1)))
        elif kind == "error":
            self.emit(f"socket error {msg.get('code')}: {msg.get('detail')}")
        else:
            self.on_event(msg)


# One vehicle -------------------------------------------------------------------------------------


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


def _http_url(base: str, path: str) -> str:
    parts = urlsplit(base)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, path, "", ""))


# The whole fleet ---------------------------------------------------------------------------------


async def _reachable(http: httpx.AsyncClient, url: str, what: str, flag: str) -> None:
    try:
        r = await http.get(url, timeout=5)
    except httpx.TransportError as exc:
        raise SimulationError(
            f"cannot reach the {what} at {url} ({exc or type(exc).__name__}): is `waybill dev` running? "
            f"Point {flag} at it"
        ) from None
    if r.status_code != 200:
        raise SimulationError(f"the {what} at {url} answered {r.status_code}, not 200: check {flag}")


async def simulate(
    opts: SimulateOptions, emit: Emit = _stdout, stopping: asyncio.Event | None = None
) -> SimulationResult:
    """Run the simulation until every route is done, `duration_s` passed or `stopping` is set."""
    if opts.vehicles < 1 or opts.rate_hz <= 0 or opts.speed_kmh <= 0:
        raise SimulationError("--vehicles, --rate and --speed-kmh must be positive")
    if opts.vehicles > 1 and "{n}" not in opts.driver_email:
        raise SimulationError("--driver-email needs {n} (the driver's number) to simulate several vehicles")
    stopping = stopping or asyncio.Event()
    started = time.monotonic()
    limits = httpx.Limits(max_connections=max(10, opts.vehicles * 2))
    async with httpx.AsyncClient(base_url=opts.api_url, timeout=30, limits=limits) as http:
        await _reachable(http, f"{opts.api_url.rstrip('/')}/health", "API", "--api")
        await _reachable(http, _http_url(opts.sockets_url, "/health"), "socket server", "--sockets")
        apis = [
            DriverApi(http, opts.driver_email.format(n=n), opts.password) for n in range(1, opts.vehicles + 1)
        ]
        missing: list[str] = []
        for api in apis:
            try:
                await api.login()
            except ApiError as exc:
                if exc.status != 401:
                    raise SimulationError(f"login of {api.email} failed: {exc}") from None
                missing.append(api.email)
        if missing:
            names = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise SimulationError(
                f"cannot sign in as {names} with the given password: create the drivers with "
                f"`waybill seed --drivers {opts.vehicles}` (development passwords), or pass --driver-email "
                "and --password"
            )
        sims: list[VehicleSim] = []
        without: list[str] = []
        for api in apis:
            route = await api.current_route()
            if route is None or route["status"] == "completed":
                without.append(api.email)
                continue
            sims.append(VehicleSim(opts, api, route, emit, stopping))
        for email in without:
            emit(f"{email} has no open route: skipped")
        if stopping.is_set():  # Ctrl-C while signing in
            return SimulationResult([], True, time.monotonic() - started)
        if not sims:
            raise SimulationError(
                "none of the drivers has an open route: create deliveries and plan them "
                "(POST /api/v1/route-plans, see docs/simulator.md), then run the simulator again"
            )
        timed_out = asyncio.Event()

        def time_is_up() -> None:
            timed_out.set()
            stopping.set()

        timer = (
            asyncio.get_running_loop().call_later(opts.duration_s, time_is_up)
            if opts.duration_s is not None
            else None
        )
        try:
            reports = await asyncio.gather(*(s.run() for s in sims))
        finally:
            if timer is not None:
                timer.cancel()
    unfinished = stopping.is_set() and not all(r.completed for r in reports)
    return SimulationResult(
        list(reports),
        unfinished and not timed_out.is_set(),
        time.monotonic() - started,
        timed_out=unfinished and timed_out.is_set(),
    )


def format_summary(result: SimulationResult) -> str:
    head = (
        "interrupted" if result.interrupted else ("stopped (--duration)" if result.timed_out else "finished")
    )
    lines = [f"Simulation {head} after {result.elapsed_s:.1f} s:"]
    for v in result.vehicles:
        filtered = sum(v.filtered.values())
        reasons = ", ".join(f"{k} {n}" for k, n in sorted(v.filtered.items()))
        state = "route complete" if v.completed else (f"error: {v.error}" if v.error else "not finished")
        lines.append(
            f"  {v.vehicle or v.driver:<10} {state}; stops {v.stops}, arrived {v.arrived}, "
            f"delivered {v.delivered}, missed arrivals {v.missed_arrivals}, "
            f"refused actions {v.action_errors}; positions sent {v.sent}, acked {v.acked}, "
            f"filtered {filtered}{f' ({reasons})' if reasons else ''}, "
            f"unacked {v.unacked}, reconnects {v.reconnects}; {v.distance_m / 1000:.1f} km"
        )
    return "\n".join(lines)


async def run(opts: SimulateOptions, emit: Emit = _stdout) -> int:
    """The command: Ctrl-C (SIGINT) or SIGTERM stops driving, waits for the last acks, prints the summary;
    a second one stops at once."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(simulate(opts, emit, stopping))

    def on_signal() -> None:
        if stopping.is_set():
            task.cancel()
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    try:
        result = await task
    except SimulationError as exc:
        sys.stderr.write(f"waybill simulate: {exc}\n")
        return 1
    except asyncio.CancelledError:
        if not task.cancelled():
            raise
        sys.stderr.write("waybill simulate: stopped at once; unacknowledged positions were dropped\n")
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    emit(format_summary(result))
    if result.interrupted:
        return 130
    return 0 if result.ok else 1


__all__ = [
    "ApiError",
    "DriverApi",
    "DriverLink",
    "SimulateOptions",
    "SimulationError",
    "SimulationResult",
    "VehicleReport",
    "format_summary",
    "proof_png",
    "run",
    "simulate",
]
