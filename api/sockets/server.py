"""`waybill sockets`: the websockets asyncio server for /ws/driver and /ws/dispatch.

The client authenticates in its first frame (`{"type": "auth", "token": "<access JWT>"}`) within
WAYBILL_WS_AUTH_TIMEOUT_SECONDS; until then nothing else is accepted. The connection lives as long
as its token: an `auth` frame with a new token of the same user, organization and role extends it,
otherwise it is closed when the token expires (4419). Each connection has a frame budget and each
user a cap on open connections (api/sockets/limits.py). GET /health on the same port answers plain
HTTP for load balancers. Close codes: api/sockets/frames.py and docs/sockets.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from http import HTTPStatus
from typing import Any
from typing import Protocol as TypingProtocol

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from api.resources import Resources
from api.security.denylist import SESSION_REVOKED
from api.security.token_user import load_user, refusal
from api.security.tokens import TokenClaims, TokenError, TokenType
from api.sockets import limits
from api.sockets.context import Context
from api.sockets.dispatch import DispatchProtocol
from api.sockets.driver import DriverProtocol
from api.sockets.frames import (
    CLOSE_AUTH_TIMEOUT,
    CLOSE_FLOOD,
    CLOSE_FORBIDDEN,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TOO_MANY_CONNECTIONS,
    CLOSE_UNAUTHENTICATED,
    FrameError,
    error_frame,
    frame,
    parse_frame,
)
from api.sockets.revocations import Revocations
from api.sockets.session import Session, last_word
from domain.roles import Role

log = logging.getLogger(__name__)
REVOCATIONS_READY_S = 5.0  # at start: how long to wait for the revocation subscription
CLOSE_TIMEOUT_S = 2.0  # a peer that does not answer our close frame is dropped after this

PATH_ROLES: dict[str, frozenset[Role]] = {
    "/ws/driver": frozenset({Role.DRIVER}),
    "/ws/dispatch": frozenset({Role.ADMIN, Role.DISPATCHER, Role.VIEWER}),
}


def _plain(status: HTTPStatus, body: str) -> Response:
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body.encode())


class Protocol(TypingProtocol):
    def send(self, text: str) -> None: ...
    async def open(self) -> None: ...
    async def handle(self, msg: dict[str, Any]) -> None: ...
    async def close(self) -> None: ...


async def _refuse(ws: ServerConnection) -> None:
    """Never called: the metrics port answers every request in `process_request`."""
    await ws.close()


class SocketServer:
    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.settings = resources.settings
        self.ctx = Context(resources)
        self.connections = limits.ConnectionLimiter(self.settings, self.settings.redis_url)
        # Open connections by the session (refresh family) their token belongs to, to close them
        # when it is signed out or revoked.
        self.sessions: dict[uuid.UUID, dict[Session, ServerConnection]] = {}
        self.revocations = Revocations(
            resources.cache_bus, resources.denylist, self._session_revoked, lambda: self.sessions.keys()
        )
        self.server: Server | None = None
        self.metrics_server: Server | None = None  # a replica's own metrics port (socket_replicas.py)
        self.metrics_elsewhere: str | None = None

    def _probe(self, path: str, *, metrics_here: bool) -> Response | None:
        """`/health` and `/metrics` (None for any other path)."""
        if path == "/health":
            return _plain(HTTPStatus.OK, "ok\n")
        if path != "/metrics":
            return None
        if metrics_here:
            return self.ctx.metrics.response()
        return _plain(HTTPStatus.NOT_FOUND, self.metrics_elsewhere or "no metrics here\n")

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:  # noqa: ARG002
        path = request.path.split("?", 1)[0]
        # Replicas share this port, so a scrape would reach any one of them: each has its own port.
        if (probe := self._probe(path, metrics_here=self.metrics_elsewhere is None)) is not None:
            return probe
        if path not in PATH_ROLES:
            return _plain(HTTPStatus.NOT_FOUND, f"no socket at {path}; use /ws/driver or /ws/dispatch\n")
        origin = request.headers.get("Origin")
        allowed = self.settings.ws_allowed_origins
        if origin and allowed and "*" not in allowed and origin not in allowed:
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
        revoked = await self._revoked(claims, fresh=False)
        if revoked is not None:
            await last_word(ws, revoked.code, revoked.detail, CLOSE_UNAUTHENTICATED)
            return None
        return Session(path=path, claims=claims)

    async def _revoked(self, claims: TokenClaims, *, fresh: bool) -> TokenError | None:
        """Why a valid token may no longer be used, as the REST API decides it (api/deps.py): its user
        was deactivated, moved or given another role, or changed their password after it was issued.
        At the handshake the API's short user cache may answer; at re-authentication the database.
        Its session was signed out or revoked: api/security/denylist.py."""
        user = await load_user(self.resources.users, self.resources.sessionmaker, claims.user_id, fresh=fresh)
        if (refused := refusal(user, claims)) is not None:
            return refused
        family = claims.family_id
        if family is not None and await self.resources.denylist.denied(family, fresh=fresh):
            return TokenError("token_revoked", SESSION_REVOKED)
        return None

    def _track(self, ws: ServerConnection, session: Session) -> bool:
        """Close the connection when its token's session is revoked; False if that is known already
        (a revocation that arrived while the token was being checked)."""
        family = session.claims.family_id
        if family is None:
            return True
        if self.resources.denylist.known(family):
            return False
        self.sessions.setdefault(family, {})[session] = ws
        return True

    def _untrack(self, session: Session) -> None:
        family = session.claims.family_id
        if family is None or (members := self.sessions.get(family)) is None:
            return
        members.pop(session, None)
        if not members:
            del self.sessions[family]

    def _session_revoked(self, family: uuid.UUID) -> None:
        for session, ws in self.sessions.pop(family, {}).items():
            session.end(ws, "token_revoked", SESSION_REVOKED, CLOSE_UNAUTHENTICATED)

    async def _reauthenticate(
        self, ws: ServerConnection, session: Session, msg: dict[str, Any]
    ) -> str | None:
        """A new token for the open connection: the `reauthenticated` frame to send, or None if the
        connection is being closed (invalid or revoked token: 4401, expired: 4419, another user,
        organization or role: 4403)."""
        token = msg.get("token")
        if not isinstance(token, str):
            raise FrameError("invalid_frame", 'send {"type": "auth", "token": "<access token>"}')
        try:
            claims = self.resources.tokens.verify(token, TokenType.ACCESS)
        except TokenError as exc:
            close = CLOSE_TOKEN_EXPIRED if exc.code == "token_expired" else CLOSE_UNAUTHENTICATED
            session.end(ws, exc.code, exc.detail, close)
            return None
        old = session.claims
        if (claims.user_id, claims.organization_id, claims.role) != (
            old.user_id,
            old.organization_id,
            old.role,
        ):
            session.end(
                ws,
                "forbidden",
                "a new token must be for the same user, organization and role",
                CLOSE_FORBIDDEN,
            )
            return None
        revoked = await self._revoked(claims, fresh=True)
        if revoked is not None:
            session.end(ws, revoked.code, revoked.detail, CLOSE_UNAUTHENTICATED)
            return None
        if session.ending is not None:
            return None  # it expired while the user was looked up
        self._untrack(session)
        session.claims = claims
        if not self._track(ws, session):
            session.end(ws, "token_revoked", SESSION_REVOKED, CLOSE_UNAUTHENTICATED)
            return None
        session.close_at_expiry(ws)
        return frame("reauthenticated", expires_at=claims.expires_at.isoformat())

    async def handler(self, ws: ServerConnection) -> None:
        path = ws.request.path.split("?", 1)[0] if ws.request else ""
        session = await self._authenticate(ws, path)
        if session is None:
            return
        if not self._track(ws, session):
            await last_word(ws, "token_revoked", SESSION_REVOKED, CLOSE_UNAUTHENTICATED)
            return
        try:
            await self._lease_and_serve(ws, path, session)
        finally:
            self._untrack(session)

    async def _lease_and_serve(self, ws: ServerConnection, path: str, session: Session) -> None:
        claims = session.claims
        lease = await self.connections.acquire(claims.user_id, claims.role)
        if lease is None:
            self.ctx.metrics.refused.labels("too_many_connections").inc()
            limit = self.connections.limit(claims.role)
            await last_word(
                ws,
                "too_many_connections",
                f"this user already has {limit} open sockets",
                CLOSE_TOO_MANY_CONNECTIONS,
            )
            return
        try:
            await self._serve(ws, path, session)
        finally:
            session.cancel()
            await self.connections.release(lease)

    async def _protocol(
        self, ws: ServerConnection, path: str, session: Session
    ) -> tuple[Protocol, dict[str, Any]] | None:
        """The connection's protocol, and what its `ready` frame adds; None if it cannot serve."""
        if path != "/ws/driver":
            return DispatchProtocol(self.ctx, ws, session.claims), {}
        driver = await DriverProtocol.bind(self.ctx, ws, session.claims)
        if driver is None:
            return None
        return driver, {"vehicle_id": driver.vehicle_id}

    def _over_budget(
        self,
        ws: ServerConnection,
        session: Session,
        protocol: Protocol,
        budget: limits.FrameBudget,
        verdict: int,
    ) -> bool:
        """A frame refused by the budget: counted, and the client told (at most every so often); True
        if it is a flood and the connection is being closed."""
        flood = verdict == limits.FLOOD
        self.ctx.metrics.refused.labels("flood" if flood else "rate_limited").inc()
        if flood:
            session.end(ws, "flood", "too many frames over the rate limit", CLOSE_FLOOD)
        elif verdict == limits.REFUSED:
            protocol.send(
                error_frame(
                    "rate_limited",
                    "frames over the rate limit are not processed: send them again later",
                    retry_after_ms=round(budget.retry_after_s() * 1000) + 1,
                )
            )
        return flood

    async def _serve(self, ws: ServerConnection, path: str, session: Session) -> None:
        opened = await self._protocol(ws, path, session)
        if opened is None:
            return
        protocol, ready = opened
        await protocol.open()
        budget = limits.frame_budget(self.settings, session.claims.role, time.monotonic())
        session.close_at_expiry(ws)
        claims = session.claims
        try:
            protocol.send(
                frame(
                    "ready",
                    user_id=str(claims.user_id),
                    role=claims.role.value,
                    expires_at=claims.expires_at.isoformat(),
                    **ready,
                )
            )
            await self._read(ws, session, protocol, budget)
        except ConnectionClosed:
            pass
        finally:
            session.cancel()
            await protocol.close()
            if session.ending is not None:
                await session.ending  # never raises: the close ends within its timeouts

    async def _read(
        self, ws: ServerConnection, session: Session, protocol: Protocol, budget: limits.FrameBudget | None
    ) -> None:
        """Every frame of the connection, until it closes or is being closed."""
        clock = time.monotonic
        async for raw in ws:
            if session.ending is not None:
                break  # closing (expired, re-authentication refused, flood): nothing more is processed
            if budget is not None and (verdict := budget.take(clock())):
                if self._over_budget(ws, session, protocol, budget, verdict):
                    break
                continue
            if self.ctx.closing:
                continue  # shutting down: not acknowledged, so the client sends it again elsewhere
            try:
                msg = parse_frame(raw)
                if msg["type"] == "ping":
                    protocol.send(frame("pong", id=msg.get("id")))
                elif msg["type"] == "auth":
                    answer = await self._reauthenticate(ws, session, msg)
                    if answer is not None:
                        protocol.send(answer)
                else:
                    await protocol.handle(msg)
            except FrameError as exc:
                protocol.send(error_frame(exc.code, exc.detail))

    def _metrics_request(self, connection: ServerConnection, request: Request) -> Response:  # noqa: ARG002
        path = request.path.split("?", 1)[0]
        probe = self._probe(path, metrics_here=True)
        return probe or _plain(HTTPStatus.NOT_FOUND, "this port serves /metrics and /health only\n")

    async def start(self, host: str, port: int, *, replica: int | None = None) -> Server:
        """Listen on `port`. A replica of `waybill sockets --processes N` (`replica` set) shares the port
        with its siblings (SO_REUSEPORT) and serves its metrics on WAYBILL_SOCKETS_METRICS_PORT +
        `replica` instead, opened after the socket port: a replica whose metrics port answers is
        taking connections."""
        self.ctx.start()
        self.connections.start()
        self.revocations.start()
        try:
            await asyncio.wait_for(self.revocations.ready.wait(), REVOCATIONS_READY_S)
        except TimeoutError:  # it keeps trying, and checks the open sessions once subscribed
            log.warning("not yet subscribed to session revocations; serving anyway")
        metrics_port = self.settings.sockets_metrics_port + (replica or 0)
        if replica is not None:
            self.metrics_elsewhere = (
                f"this port is shared by several sockets replicas; each serves its own metrics on its "
                f"port from WAYBILL_SOCKETS_METRICS_PORT up (replica {replica}: {metrics_port})\n"
            )
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
            reuse_port=replica is not None,
        )
        if replica is not None:
            self.metrics_server = await serve(
                _refuse, host, metrics_port, process_request=self._metrics_request, compression=None
            )
        return self.server

    async def stop(self) -> None:
        """Stop reading frames, store and acknowledge what was received, then close every socket."""
        await self.ctx.stop()
        for server in (self.server, self.metrics_server):
            if server is not None:
                server.close()
                await server.wait_closed()
        await self.revocations.stop()
        await self.connections.close()
