"""Fan-out from the bus to socket clients: one bus subscription per organization and replica, and a
bounded outbox per client so that a slow client never slows ingestion or anyone else.

An outbox queues positions per vehicle; past `max_pending` it keeps only the newest one of each
vehicle (a slow client loses old positions, keeps the newest), and it holds a bounded list of other
frames. Its writer task sends
whatever is pending as one frame at a time. A client whose outbox overflows, or whose writer has been
stuck on a full socket for longer than `max_lag_s`, is disconnected with 4429.

Positions messages from the bus are not decoded on their way to a `fleet` subscriber: the feed hands
the message's bytes to the outbox, which sends them as they are (several pending ones spliced into
one frame). They are decoded only when needed: for a subscriber of single vehicles, deliveries or
routes (once per message, whoever needs it), or when an outbox falls behind and keeps only each
vehicle's newest position. Every other message is decoded once per feed, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from api.sockets.frames import CLOSE_TOO_SLOW
from api.sockets.position_json import POSITIONS_HEAD, POSITIONS_TAIL
from db.bus.base import Bus
from domain import channels

if TYPE_CHECKING:
    from api.sockets.metrics import SocketMetrics

log = logging.getLogger(__name__)
RESUBSCRIBE_S = 1.0
_HEAD = POSITIONS_HEAD.encode()
_TAIL = POSITIONS_TAIL.encode()
_VEHICLE_KEY = b'"vehicle_id":'  # once per position in a positions message


def is_positions(payload: bytes) -> bool:
    """A positions message as the socket server publishes it (api/sockets/position_json.py)."""
    return payload.startswith(_HEAD) and payload.endswith(_TAIL)


def count_positions(payload: bytes) -> int:
    """Positions in such a message without decoding it: each has one `vehicle_id` key, and nothing else
    in it (UUIDs, numbers, ISO times) can contain that text."""
    return payload.count(_VEHICLE_KEY)


def splice(payloads: list[bytes]) -> bytes:
    """Several positions messages as one, in order."""
    if len(payloads) == 1:
        return payloads[0]
    head, tail = len(_HEAD), len(_TAIL)
    inner = [p[head:-tail] for p in payloads]
    return _HEAD + b",".join(i for i in inner if i) + _TAIL


class Outbox:
    def __init__(
        self,
        ws: ServerConnection,
        max_pending: int,
        max_lag_s: float,
        metrics: SocketMetrics | None = None,
        endpoint: str = "dispatch",
    ) -> None:
        self.ws = ws
        self.metrics = metrics
        self._counts = metrics.endpoints[endpoint] if metrics is not None else None
        self.max_pending, self.max_lag_s = max_pending, max_lag_s
        self.positions: dict[str, list[dict[str, Any]]] = {}  # vehicle -> its pending positions, in order
        self.raw: list[bytes] = []  # positions messages as published, after self.positions, in order
        self.queued = 0  # positions in self.positions and self.raw
        self.frames: list[str] = []
        self.dropped = 0
        self.busy_since: float | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.kicked = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def pending(self) -> int:
        return self.queued + len(self.frames)

    def position(self, p: dict[str, Any]) -> None:
        self.add_positions((p,))

    def add_positions(self, batch: Sequence[dict[str, Any]]) -> None:
        """Queue positions in order: one overflow check and one wake-up for the lot."""
        if self.raw:
            self._decode_raw()  # what came before them goes first
        for p in batch:
            self.positions.setdefault(p["vehicle_id"], []).append(p)
        self.queued += len(batch)
        self._overflow()
        self.check()

    def add_raw(self, payload: bytes, count: int) -> None:
        """Queue a positions message as published (`is_positions`), holding `count` positions."""
        self.raw.append(payload)
        self.queued += count
        self._overflow()
        self.check()

    def _decode_raw(self) -> None:
        raw, self.raw = self.raw, []
        for payload in raw:
            for p in json.loads(payload)["positions"]:
                self.positions.setdefault(p["vehicle_id"], []).append(p)

    def _overflow(self) -> None:
        if self.queued > self.max_pending and self.busy_since is not None:
            # Falling behind: keep only the newest position of each vehicle. Bounded by the fleet size.
            self._decode_raw()
            for vehicle, pending in self.positions.items():
                self.dropped += len(pending) - 1
                self.positions[vehicle] = pending[-1:]
            if self.metrics is not None:
                self.metrics.subscriber_drops.inc(self.queued - len(self.positions))
            self.queued = len(self.positions)

    def frame(self, text: str) -> None:
        if self._send_now(text):
            return
        self.frames.append(text)
        self.check()

    def _send_now(self, text: str) -> bool:
        """Write a frame at once if no frame is queued or being sent before it and the socket's
        buffer is empty, as `ws.send` would without waiting, but with no wake-up of the writer task
        and no send context. Frames go before queued positions either way (see `_run`). Acks take
        this path: one per driver frame, and at 5,000 frames/s the queued path was about a tenth of
        the server's CPU. A socket that is not keeping up gets its frames through the queue, so
        order, back-pressure and the lag limit are unchanged."""
        ws = self.ws
        if self.kicked or self.busy_since is not None or self.frames:
            return False  # (queued positions go after frames anyway, see _run)
        if ws.send_in_progress is not None or ws.protocol.state is not State.OPEN:
            return False
        transport = ws.transport
        if transport.is_closing() or transport.get_write_buffer_size():
            return False
        ws.protocol.send_text(text.encode())
        ws.send_data()
        if self._counts is not None:
            self._counts.frames_out += 1
        return True

    def check(self) -> None:
        if self.kicked:
            return
        lagging = self.busy_since is not None and time.monotonic() - self.busy_since > self.max_lag_s
        if len(self.frames) > self.max_pending or lagging:
            self.kick()
            return
        if self.frames or self.queued:  # the periodic sweep finds most outboxes empty: no wake-up then
            self._wake.set()

    def kick(self) -> None:
        """Disconnect a client that fell too far behind; its pending frames are dropped."""
        self.kicked = True
        if self.metrics is not None:
            self.metrics.subscriber_disconnects.inc()
        self.positions.clear()
        self.raw.clear()
        self.frames.clear()
        log.info("disconnecting a slow socket client (%d positions dropped)", self.dropped)
        if self._task is not None:
            self._task.cancel()
        asyncio.create_task(self._close())  # noqa: RUF006 - close() ends by itself (close_timeout)

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(CLOSE_TOO_SLOW, "too slow: fell too far behind")

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self.positions or self.raw or self.frames:
                    frames: list[str | bytes] = list(self.frames)
                    self.frames = []
                    if self.positions:
                        batch = [p for pending in self.positions.values() for p in pending]
                        self.positions = {}
                        frames.append(json.dumps({"type": "positions", "positions": batch}))
                    if self.raw:
                        raw, self.raw = self.raw, []
                        frames.append(splice(raw))
                    self.queued = 0
                    self.busy_since = time.monotonic()
                    for text in frames:
                        if isinstance(text, bytes):  # UTF-8 JSON already: a text frame, not decoded
                            await self.ws.send(text, text=True)
                        else:
                            await self.ws.send(text)
                    self.busy_since = None
                    if self._counts is not None:
                        self._counts.frames_out += len(frames)
        except ConnectionClosed:
            pass


@dataclass(eq=False)
class Listener:
    """A socket client of one organization: a driver (its vehicle) or a dispatcher (its topics)."""

    outbox: Outbox
    vehicle_id: str | None = None  # drivers: their vehicle's routes and deliveries
    fleet: bool = False
    vehicles: set[str] = field(default_factory=set)
    deliveries: dict[str, str | None] = field(default_factory=dict)  # delivery -> its vehicle
    routes: dict[str, str] = field(default_factory=dict)  # route -> its vehicle

    @property
    def dispatcher(self) -> bool:
        return self.vehicle_id is None

    def wants_vehicle(self, vehicle_id: str | None) -> bool:
        if vehicle_id is None:
            return False
        return (
            self.fleet
            or vehicle_id in self.vehicles
            or vehicle_id in self.deliveries.values()
            or vehicle_id in self.routes.values()
        )


class RouteObserver(Protocol):
    def route_changed(self, organization_id: UUID, vehicle_id: str) -> None: ...


class OrgFeed:
    """One bus subscription for an organization's positions, deliveries and routes on this replica."""

    def __init__(
        self, bus: Bus, org: UUID, observer: RouteObserver | None, metrics: SocketMetrics | None = None
    ) -> None:
        self.bus, self.org, self.observer = bus, org, observer
        self._fanout = metrics.fanout_seconds if metrics is not None else None
        self.listeners: set[Listener] = set()
        # The dispatchers among them: positions go to these only, and a replica may hold thousands of
        # drivers of the organization, so a positions message does not look at every listener.
        self.dispatchers: set[Listener] = set()
        self.ready = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"feed:{org}")

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def add(self, listener: Listener) -> None:
        self.listeners.add(listener)
        if listener.dispatcher:
            self.dispatchers.add(listener)

    def discard(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        self.dispatchers.discard(listener)

    async def _run(self) -> None:
        org = str(self.org)
        names = (channels.org_positions(org), channels.org_deliveries(org), channels.org_routes(org))
        while True:
            try:
                async with self.bus.subscribe_raw(*names) as messages:
                    self.ready.set()
                    async for msg in messages:
                        started = time.perf_counter()
                        self.dispatch_raw(msg.payload)
                        if self._fanout is not None:
                            self._fanout.observe(time.perf_counter() - started)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("bus subscription for %s failed, resubscribing: %s", org, exc)
            self.ready.clear()
            await asyncio.sleep(RESUBSCRIBE_S)

    def dispatch_raw(self, payload: bytes) -> None:
        """A message from the bus as published: positions are forwarded to fleet subscribers as they are
        and decoded only if someone needs them one by one; anything else is decoded and dispatched."""
        if is_positions(payload):
            if count := count_positions(payload):
                self._fan_positions(lambda: self._decode(payload).get("positions", []), (payload, count))
            return
        data = self._decode(payload)
        if data:
            self.dispatch(data)

    def _fan_positions(
        self, decode: Callable[[], Sequence[dict[str, Any]]], raw: tuple[bytes, int] | None
    ) -> None:
        # Positions go to dispatchers only, looked at once per message, not once per position.
        # `raw` (the message as published, and its position count) goes to fleet subscribers as it is;
        # the positions are decoded at most once, and only if a listener needs them one by one.
        positions: Sequence[dict[str, Any]] | None = None
        for listener in self.dispatchers:
            if listener.fleet and raw is not None:
                listener.outbox.add_raw(*raw)
                continue
            if positions is None:
                positions = decode()
            if listener.fleet:
                listener.outbox.add_positions(positions)
            elif wanted := [p for p in positions if listener.wants_vehicle(p.get("vehicle_id"))]:
                listener.outbox.add_positions(wanted)

    def _decode(self, payload: bytes) -> dict[str, Any]:
        try:
            data = json.loads(payload)
        except ValueError:
            data = None
        if not isinstance(data, dict):  # not ours: someone published raw text under our prefix
            log.warning("dropped a message that is not a JSON object on the feed of %s", self.org)
            return {}
        return data

    def dispatch(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "positions":
            self._fan_positions(lambda: data.get("positions", ()), None)
            return
        vehicle = data.get("vehicle_id")
        if kind == "route.changed" and self.observer is not None and vehicle:
            self.observer.route_changed(self.org, vehicle)
        text: str | None = None
        for listener in self.listeners:
            if _interested(listener, kind, data, vehicle):
                text = text or json.dumps(data)
                listener.outbox.frame(text)


def _interested(listener: Listener, kind: Any, data: dict[str, Any], vehicle: str | None) -> bool:
    if not listener.dispatcher:
        return kind in ("route.changed", "delivery.changed") and vehicle == listener.vehicle_id
    if kind == "delivery.changed":
        delivery = data.get("delivery_id")
        if delivery in listener.deliveries and vehicle:
            listener.deliveries[delivery] = vehicle  # follow the delivery to its (new) vehicle
        return listener.fleet or delivery in listener.deliveries or vehicle in listener.vehicles
    if kind == "route.changed" and data.get("route_id") in listener.routes:
        return True
    if data.get("delivery_id") is not None and data.get("delivery_id") in listener.deliveries:
        return True
    return listener.wants_vehicle(vehicle)


class Hub:
    """The organizations' feeds on this replica, each alive while a client of it is connected."""

    def __init__(
        self, bus: Bus, observer: RouteObserver | None = None, metrics: SocketMetrics | None = None
    ) -> None:
        self.bus, self.observer, self.metrics = bus, observer, metrics
        self.feeds: dict[UUID, OrgFeed] = {}

    async def join(self, org: UUID, listener: Listener, timeout: float = 5.0) -> None:
        feed = self.feeds.get(org)
        if feed is None:
            feed = self.feeds[org] = OrgFeed(self.bus, org, self.observer, self.metrics)
        feed.add(listener)
        await asyncio.wait_for(feed.ready.wait(), timeout)

    async def leave(self, org: UUID, listener: Listener) -> None:
        feed = self.feeds.get(org)
        if feed is None:
            return
        feed.discard(listener)
        if not feed.listeners:
            del self.feeds[org]
            await feed.stop()

    async def stop(self) -> None:
        feeds, self.feeds = list(self.feeds.values()), {}
        for feed in feeds:
            await feed.stop()
