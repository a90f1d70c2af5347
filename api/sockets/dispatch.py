"""/ws/dispatch: a dispatcher subscribes to topics of their own organization and receives positions,
tracking events and delivery/route changes."""

from __future__ import annotations

import contextlib
import socket
import uuid
from typing import Any

from websockets.asyncio.server import ServerConnection

from api.http.nul import storable
from api.security.tokens import TokenClaims
from api.sockets.context import Context
from api.sockets.fanout import Listener
from api.sockets.frames import FrameError, frame
from db.repositories.sockets_subscriptions import (
    Followed,
    followed_delivery,
    followed_route,
    followed_vehicle,
)

TOPICS = ("fleet", "vehicle", "delivery", "route")
# Caps the kernel's send buffer for a dispatcher (autotuning lets it grow to 4 MiB): what does not fit
# waits in the outbox, where it is coalesced and where a stalled client is noticed.
SEND_BUFFER_BYTES = 256 * 1024
# Vehicles, deliveries and routes one connection may follow at once (the fleet topic covers them all):
# bounds the memory a connection holds and the per-position matching work of the fan-out.
MAX_SUBSCRIPTIONS = 1000


class DispatchProtocol:
    def __init__(self, ctx: Context, ws: ServerConnection, claims: TokenClaims) -> None:
        self.ctx, self.ws, self.org = ctx, ws, claims.organization_id
        self.listener = Listener(ctx.outbox(ws, "dispatch"))
        self.counts = ctx.metrics.endpoints["dispatch"]
        self.joined = False
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)

    def send(self, text: str) -> None:
        self.listener.outbox.frame(text)

    async def open(self) -> None:
        """Nothing to join until the first subscription."""
        self.counts.connections += 1

    async def close(self) -> None:
        self.counts.connections -= 1
        if self.joined:
            await self.ctx.hub.leave(self.org, self.listener)
        await self.ctx.drop(self.listener.outbox)

    async def handle(self, msg: dict[str, Any]) -> None:
        self.counts.frames_in += 1
        kind = msg["type"]
        if kind not in ("subscribe", "unsubscribe"):
            raise FrameError("unsupported_type", f"frame type {kind!r} is not supported on /ws/dispatch")
        topic, ident = msg.get("topic"), msg.get("id")
        if topic not in TOPICS:
            raise FrameError("invalid_topic", f"topic must be one of {', '.join(TOPICS)}")
        if topic != "fleet" and not isinstance(ident, str):
            raise FrameError("invalid_topic", f"topic {topic} needs a string `id`")
        if isinstance(ident, str) and not storable(ident):  # would reach a statement that fails
            raise FrameError("invalid_topic", "`id` must be text without NUL characters or lone surrogates")
        lst = self.listener
        if kind == "unsubscribe":
            if topic == "fleet":
                lst.fleet = False
            elif topic == "vehicle":
                lst.vehicles.discard(str(ident))
            else:
                (lst.deliveries if topic == "delivery" else lst.routes).pop(str(ident), None)
            self.send(frame("unsubscribed", topic=topic, id=ident))
            return
        if topic == "fleet":
            lst.fleet = True
        else:
            assert isinstance(ident, str)
            if len(lst.vehicles) + len(lst.deliveries) + len(lst.routes) >= MAX_SUBSCRIPTIONS:
                raise FrameError(
                    "too_many_subscriptions",
                    f"at most {MAX_SUBSCRIPTIONS} vehicle, delivery and route subscriptions per socket; "
                    "unsubscribe some, or subscribe to the fleet",
                )
            await self._subscribe(topic, ident)
        if not self.joined:
            await self.ctx.hub.join(self.org, lst)
            self.joined = True
        self.send(frame("subscribed", topic=topic, id=ident))

    async def _subscribe(self, topic: str, ident: str) -> None:
        """Only the organization's own entities: anything else is reported as not found."""
        found = await self._find(topic, ident)
        if found is None:
            raise FrameError("not_found", f"no {topic} {ident} in your organization")
        vehicle = str(found.vehicle_id) if found.vehicle_id is not None else None
        if topic == "vehicle":
            self.listener.vehicles.add(ident)
        elif topic == "delivery":
            self.listener.deliveries[ident] = vehicle
        else:
            assert vehicle is not None
            self.listener.routes[ident] = vehicle

    async def _find(self, topic: str, ident: str) -> Followed | None:
        sessionmaker = self.ctx.resources.sessionmaker
        if topic == "route":
            async with sessionmaker() as session:
                return await followed_route(session, self.org, ident)
        try:
            key = uuid.UUID(ident)
        except ValueError:
            raise FrameError("not_found", f"no {topic} {ident}") from None
        lookup = followed_vehicle if topic == "vehicle" else followed_delivery
        async with sessionmaker() as session:
            return await lookup(session, self.org, key)
