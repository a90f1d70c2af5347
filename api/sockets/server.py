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
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from typing import Protocol as TypingProtocol

from sqlalchemy import select
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from api.resources import Resources
from api.security.denylist import SESSION_REVOKED
from api.security.tokens import TokenClaims, TokenError, TokenType
from api.security.user_cache import AuthUser
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
from db.models import User
from domain.roles import Role

log = logging.getLogger(__name__)
REVOCATIONS_READY_S = 5.0  # at start: how long to wait for the revocation subscription
CLOSE_TIMEOUT_S = 2.0  # a peer that does not answer our close frame is dropped after this
LAST_WORD_TIMEOUT_S = 1.0  # how long the error frame before a close may wait on a peer not reading

PATH_ROLES: dict[str, frozenset[Role]] = {
    "/ws/driver": frozenset({Role.DRIVER}),
    "/ws/dispatch": frozenset({Role.ADMIN, Role.DISPATCHER, Role.VIEWER}),
}


@dataclass(eq=False)  # hashable by identity: SocketServer.sessions holds it
class Session:
    path: str
    claims: TokenClaims
    expiry: asyncio.TimerHandle | None = None
    ending: asyncio.Task[None] | None = None  # closing: no more frames are processed

    def close_at_expiry(self, ws: ServerConnection) -> None:
        """(Re)arm the timer that closes the connection when the token expires."""
        if self.expiry is not None:
            self.expiry.cancel()
        loop = asyncio.get_running_loop()
        delay = self.claims.expires_at.timestamp() - time.time()
        self.expiry = loop.call_at(loop.time() + max(0.0, delay), self._expired, ws)

    def _expired(self, ws: ServerConnection) -> None:
        self.end(
            ws, "token_expired", "the token has expired; send a new one before it does", CLOSE_TOKEN_EXPIRED
        )

    def end(self, ws: ServerConnection, code: str, detail: str, close: int) -> None:
        if self.ending is None:
            self.ending = asyncio.create_task(last_word(ws, code, detail, close))

    def cancel(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()


async def last_word(ws: ServerConnection, code: str, detail: str, close: int) -> None:
    """An error frame, then the close: a peer that does not read gets the close without the frame."""
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        await asyncio.wait_for(ws.send(error_frame(code, detail)), LAST_WORD_TIMEOUT_S)
    with contextlib.suppress(ConnectionClosed):
        await ws.close(close, code)


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
        users = self.resources.users
        user = None if fresh else users.get(claims.user_id)
        if user is None:
            columns = [getattr(User, name) for name in AuthUser.__slots__]
            async with self.resources.sessionmaker() as session:
                row = (await session.execute(select(*columns).where(User.id == claims.user_id))).first()
            user = AuthUser(*row) if row is not None else None
            if user is not None:
                users.put(user)
        if (
            user is None
            or not user.active
            or user.organization_id != claims.organization_id
            or user.role != claims.role.value
        ):
            return TokenError("invalid_token", "the token's user is no longer active")
        if user.password_changed_at and claims.issued_at < user.password_changed_at:
            return TokenError("token_revoked", "the password changed after this token was issued")
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

    async def _serve(self, ws: ServerConnection, path: str, session: Session) -> None:
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
        clock = time.monotonic
        budget = limits.frame_budget(self.settings, session.claims.role, clock())
        session.close_at_expiry(ws)
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
                if session.ending is not None:
                    break  # closing (expired, re-authentication refused, flood): nothing more is processed
                if budget is not None and (verdict := budget.take(clock())):
                    reason = "flood" if verdict == limits.FLOOD else "rate_limited"
                    self.ctx.metrics.refused.labels(reason).inc()
                    if verdict == limits.FLOOD:
                        session.end(ws, "flood", "too many frames over the rate limit", CLOSE_FLOOD)
                        break
                    if verdict == limits.REFUSED:
                        protocol.send(
                            error_frame(
                                "rate_limited",
                                "frames over the rate limit are not processed: send them again later",
                                retry_after_ms=round(budget.retry_after_s() * 1000) + 1,
                            )
                        )
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
        except ConnectionClosed:
            pass
        finally:
            session.cancel()
            await protocol.close()
            if session.ending is not None:
                await session.ending  # never raises: the close ends within its timeouts

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
