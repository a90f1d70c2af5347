"""`waybill sockets`: the websockets asyncio server for /ws/driver and /ws/dispatch.

The client authenticates in its first frame (`{"type": "auth", "token": "<access JWT>"}`) within
WAYBILL_WS_AUTH_TIMEOUT_SECONDS; until then nothing else is accepted. GET /health on the same port
answers plain HTTP for load balancers.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from typing import Protocol as TypingProtocol

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from api.security.tokens import TokenClaims, TokenError, TokenType
from api.sockets.context import Context
from api.sockets.dispatch import DispatchProtocol
from api.sockets.driver import DriverProtocol
from api.sockets.frames import (
    CLOSE_AUTH_TIMEOUT,
    CLOSE_FORBIDDEN,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_UNAUTHENTICATED,
    FrameError,
    error_frame,
    frame,
    parse_frame,
)
from domain.roles import Role
from waybill.resources import Resources

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 2.0  # a peer that does not answer our close frame is dropped after this

PATH_ROLES: dict[str, frozenset[Role]] = {
    "/ws/driver": frozenset({Role.DRIVER}),
    "/ws/dispatch": frozenset({Role.ADMIN, Role.DISPATCHER, Role.VIEWER}),
}


@dataclass(frozen=True)
class Session:
    path: str
    claims: TokenClaims


def _plain(status: HTTPStatus, body: str) -> Response:
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body.encode())


class Protocol(TypingProtocol):
    def send(self, text: str) -> None: ...
    async def open(self) -> None: ...
    async def handle(self, msg: dict[str, Any]) -> None: ...
    async def close(self) -> None: ...


class SocketServer:
    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.settings = resources.settings
        self.ctx = Context(resources)
        self.server: Server | None = None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:  # noqa: ARG002
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return _plain(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            return self.ctx.metrics.response()
        if path not in PATH_ROLES:
            return _plain(HTTPStatus.NOT_FOUND, f"no socket at {path}; use /ws/driver or /ws/dispatch\n")
        origin = request.headers.get("Origin")
        allowed = self.settings.ws_allowed_origins
        if origin and allowed and origin not in allowed:
            return _plain(HTTPStatus.FORBIDDEN, "origin not allowed\n")
        return None

    async def _authenticate(self, ws: ServerConnection, path: str) -> Session | None:
        try:
            raw = await asyncio.wait_for(ws.recv(), self.settings.ws_auth_timeout_seconds)
        except TimeoutError:
            await ws.send(error_frame("auth_timeout", "authenticate in the first frame"))
            await ws.close(CLOSE_AUTH_TIMEOUT, "authentication timeout")
            return None
        try:
            first = parse_frame(raw)
            token = first.get("token")
            if first["type"] != "auth" or not isinstance(token, str):
                raise FrameError("auth_required", 'the first frame must be {"type": "auth", "token": "..."}')
            claims = self.resources.tokens.verify(token, TokenType.ACCESS)
        except (FrameError, TokenError) as exc:
            await ws.send(error_frame(exc.code, exc.detail))
            close = CLOSE_TOKEN_EXPIRED if exc.code == "token_expired" else CLOSE_UNAUTHENTICATED
            await ws.close(close, exc.code)
            return None
        if claims.role not in PATH_ROLES[path]:
            await ws.send(error_frame("forbidden", f"role {claims.role.value} may not use {path}"))
            await ws.close(CLOSE_FORBIDDEN, "forbidden")
            return None
        return Session(path=path, claims=claims)

    async def handler(self, ws: ServerConnection) -> None:
        path = ws.request.path.split("?", 1)[0] if ws.request else ""
        session = await self._authenticate(ws, path)
        if session is None:
            return
        protocol: Protocol
        ready: dict[str, Any] = {}
        if path == "/ws/driver":
            driver = await DriverProtocol.bind(self.ctx, ws, session.claims)
            if driver is None:
                return
            protocol = driver
            ready["vehicle_id"] = driver.vehicle_id
        else:
            protocol = DispatchProtocol(self.ctx, ws, session.claims)
        await protocol.open()
        try:
            protocol.send(
                frame(
                    "ready",
                    user_id=str(session.claims.user_id),
                    role=session.claims.role.value,
                    expires_at=session.claims.expires_at.isoformat(),
                    **ready,
                )
            )
            async for raw in ws:
                if self.ctx.closing:
                    continue  # shutting down: not acknowledged, so the client sends it again elsewhere
                try:
                    msg = parse_frame(raw)
                except FrameError as exc:
                    protocol.send(error_frame(exc.code, exc.detail))
                    continue
                if msg["type"] == "ping":
                    protocol.send(frame("pong", id=msg.get("id")))
                    continue
                try:
                    await protocol.handle(msg)
                except FrameError as exc:
                    protocol.send(error_frame(exc.code, exc.detail))
        except ConnectionClosed:
            pass
        finally:
            await protocol.close()

    async def start(self, host: str, port: int) -> Server:
        self.ctx.start()
        self.server = await serve(
            self.handler,
            host,
            port,
            process_request=self._process_request,
            max_size=self.settings.ws_max_frame_bytes,
            ping_interval=self.settings.ws_ping_interval_seconds,
            ping_timeout=self.settings.ws_ping_timeout_seconds,
            close_timeout=CLOSE_TIMEOUT_S,
            # permessage-deflate keeps zlib state per connection (~100+ KiB) and costs CPU per frame;
            # position frames are small, so memory per connection and throughput win.
            compression=None,
        )
        return self.server

    async def stop(self) -> None:
        """Stop reading frames, store and acknowledge what was received, then close every socket."""
        await self.ctx.stop()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
